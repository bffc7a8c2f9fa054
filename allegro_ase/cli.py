"""The ``allegro-ase`` command: ``eval``, ``md``, ``relax``, ``neb``, ``models``, ``train``, ``export``.

Each subcommand lives in :mod:`allegro_ase.commands` as an ``add_*`` function that adds its
parser to the shared subcommands and sets ``run``, a function ``(args) -> exit status``. To add
one, write such a function and append it to :data:`COMMANDS`.

Exit status: 0 on success, 1 for an error (one line on stderr, ``allegro-ase: error: ...``;
``--debug`` adds the traceback), 2 for a usage error (argparse), 3 when a relaxation or NEB did
not converge within its steps (its results are still written), 130 on Ctrl-C.
Nothing heavy is imported here: ``allegro-ase --help`` does not import torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from .commands.evaluate import add_eval
from .commands.export import add_export
from .commands.md import add_md
from .commands.models import add_models
from .commands.neb import add_neb
from .commands.relax import add_relax
from .commands.train import add_train

COMMANDS = (add_eval, add_md, add_relax, add_neb, add_models, add_train, add_export)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every command in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="allegro-ase",
        description="Allegro and NequIP interatomic potentials for ASE. "
        "`allegro-ase COMMAND --help` describes each command.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit status."""
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    package_logger = logging.getLogger("allegro_ase")
    level, handler = package_logger.level, logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    quiet = getattr(args, "quiet", False)
    package_logger.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    package_logger.addHandler(handler)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("allegro-ase: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # every error ends as one line (and the traceback with --debug)
        if debug:
            traceback.print_exc()
        print(f"allegro-ase: error: {error_line(error, debug)}", file=sys.stderr)
        return 1
    finally:  # the process may go on (tests, notebooks): leave logging as it was
        package_logger.removeHandler(handler)
        package_logger.setLevel(level)


# errors that explain themselves: about the input, a file, a missing package
EXPLAINED = (ValueError, OSError, LookupError, ImportError, MemoryError)
# errors that are bugs wherever they are raised
BUGS = (AttributeError, AssertionError, NameError, NotImplementedError)


def error_line(error: BaseException, debug: bool = False) -> str:
    """Return the one-line message of ``error``.

    An error written for the user (of the types in :data:`EXPLAINED`, of this package's or ASE's
    own types, or raised by this package's code) gives its message; anything else, such as an
    error deep inside torch, is named by its type, with a pointer to ``--debug``.
    """
    if isinstance(error, OSError) and error.strerror and error.filename:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    text = " ".join(text.split()) or type(error).__name__
    explained = isinstance(error, EXPLAINED) or _ours(type(error).__module__)
    if not explained and not isinstance(error, BUGS):
        explained = _ours(_raised_in(error))
    if not explained:
        text = f"{type(error).__name__}: {text}"
        if not debug:
            text += " (run again with --debug for the traceback)"
    return text


def _ours(module: str) -> bool:
    """Whether ``module`` belongs to this package or to ASE (their messages are for users)."""
    return module == "ase" or module.startswith(("allegro_ase", "ase."))


def _raised_in(error: BaseException) -> str:
    """Return the name of the module whose code raised ``error``."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return "" if tb is None else tb.tb_frame.f_globals.get("__name__", "")
