"""What the subcommands share: flags, the one model loader, structure files, the progress bar.

Only the standard library is imported here at the top; torch, ASE and the package's model code
are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger("allegro_ase.cli")

REFERENCE_SUFFIXES = (".ckpt", ".nequip.zip")
COMPILED_SUFFIXES = (".nequip.pth", ".nequip.pt2")
HDF5_SUFFIXES = (".h5", ".hdf5")
MODEL_HELP = (
    "a zoo name (allegro-ase models list), a model file of allegro-ase (.pt), a file of the "
    "reference framework (.ckpt, .nequip.zip) or a nequip.net:group/name:version id"
)


class CommandError(Exception):
    """A mistake in the command's input, reported as one line with exit status 1."""


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """Argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    """Argparse type: a finite float > 0."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--quiet`` and ``--debug``, which every subcommand takes."""
    group = parser.add_argument_group("output")
    group.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no log messages"
    )
    group.add_argument(
        "--debug", action="store_true", help="debug messages, and the traceback of an error"
    )


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """Add the ``MODEL`` argument and ``--device``, ``--dtype``, ``--threads``, ``--compile``."""
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    group = parser.add_argument_group("model")
    group.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:K"
    )
    group.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        help="precision of the weights (default: the model's own)",
    )
    group.add_argument(
        "--threads", type=positive_int, help="CPU threads of torch (default: torch's choice)"
    )
    group.add_argument(
        "--compile",
        action="store_true",
        help="run the model compiled with AOTInductor: about 2x faster on a CPU; the first "
        "use of a model compiles it (30-80 s, then cached)",
    )
    add_output_flags(parser)


def load_energy_model(spec: str) -> Any:
    """Load the energy model that ``MODEL`` names, on the CPU with its weights frozen.

    Parameters
    ----------
    spec : str
        See :data:`MODEL_HELP`. A compiled reference file (``.nequip.pth``, ``.nequip.pt2``)
        is refused: it holds code, and the command line does not run code from files.

    Returns
    -------
    torch.nn.Module
        A model of :mod:`allegro_ase.models`.
    """
    from ..nequip_files.hub import is_nequip_net_id

    if is_nequip_net_id(spec) or spec.endswith(REFERENCE_SUFFIXES):
        logger.debug("%s: a reference-framework model, rebuilt by allegro_ase.nequip_files", spec)
        from ..nequip_files import load_nequip_model
        from ..nequip_files.hub import resolve_path

        if not is_nequip_net_id(spec):
            _require_file(spec, "model file")
        return load_nequip_model(resolve_path(spec)).requires_grad_(False)
    if spec.endswith(COMPILED_SUFFIXES):
        raise CommandError(
            f"{spec} is a compiled model (code, not weights), which the command line does not "
            "run; give the .ckpt or .nequip.zip it was compiled from, or load it in Python with "
            "AllegroCalculator.from_nequip(path, allow_compiled=True)."
        )
    from ..io import load_model

    if os.path.isfile(spec):
        logger.debug("%s: a model file of allegro-ase", spec)
        return load_model(spec).requires_grad_(False)
    if spec.endswith(".pt") or os.sep in spec:
        _require_file(spec, "model file")
    from ..zoo import resolve

    path = resolve(spec)
    logger.debug("%s: a zoo model, file %s (sha256 verified)", spec, path)
    return load_model(path).requires_grad_(False)


def load_calculator(args: argparse.Namespace) -> Any:
    """Return an :class:`~allegro_ase.AllegroCalculator` for ``args.model``.

    Sets torch's thread count first when ``--threads`` is given (the command owns its process).
    """
    import torch

    from ..calculator import AllegroCalculator

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_energy_model(args.model)
    calc = AllegroCalculator(model, device=args.device, dtype=args.dtype, compile=args.compile)
    threads = torch.get_num_threads()
    logger.info(
        "model %s: %s, %s, r_max %g Å, on %s (%d torch thread%s)%s",
        args.model,
        type(calc.model).__name__,
        calc.parameters["dtype"],
        calc.model.r_max,
        calc.device,
        threads,
        "" if threads == 1 else "s",
        ", compiled" if args.compile else "",
    )
    return calc


def read_frames(path: str) -> list:
    """Read every frame of ``path``: an ``allegro-ase-dataset`` HDF5 file or any file ASE reads.

    Labels come with the frames: a ``SinglePointCalculator`` holding energy, forces and
    stress where the file has them.
    """
    _require_file(path)
    if path.endswith(HDF5_SUFFIXES):
        from ..datasets import read_hdf5

        return [frame.to_atoms() for frame in read_hdf5(path)]
    frames = _ase_read(path, ":")
    if not frames:
        raise CommandError(f"{path} holds no structures.")
    return frames


def read_structure(path: str) -> Any:
    """Read the structure of ``path`` (its last frame when it holds several), without labels."""
    _require_file(path)
    atoms = _ase_read(path, -1)
    atoms.calc = None
    return atoms


def write_frames(path: str, frames: Any) -> None:
    """Write one or several structures; the format follows the file name (ASE's rules)."""
    from ase.io import write

    write(path, frames)


def progress_bar(total: int, description: str, quiet: bool, unit: str = "step") -> Any:
    """Return a tqdm bar on stderr with rate and ETA; a silent one with ``quiet``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit=unit, disable=quiet, dynamic_ncols=True)


def _require_file(path: str, kind: str = "file") -> None:
    """Raise a one-line error naming ``path`` unless it is a file."""
    if Path(path).is_file():
        return
    if Path(path).is_dir():
        raise CommandError(f"{path}: a folder, not a {kind}.")
    if kind == "model file":
        raise CommandError(f"{path}: no such model file. MODEL is {MODEL_HELP}.")
    raise CommandError(f"{path}: no such {kind}.")


def _ase_read(path: str, index: Any) -> Any:
    """``ase.io.read``, with a one-line error for a file it cannot read."""
    from ase.io import read

    try:
        return read(path, index=index)
    except Exception as error:  # ASE raises many types for unknown or damaged files
        raise CommandError(
            f"ASE cannot read {path} ({type(error).__name__}: {error}); give a file in a "
            "format ASE reads (extxyz, POSCAR, cif, .traj, ...)."
        ) from error
