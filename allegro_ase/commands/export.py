"""``allegro-ase export MODEL OUT --target ...``: compile a model for LAMMPS or nequip's ASE."""

from __future__ import annotations

import argparse
import time

from .common import MODEL_HELP, add_output_flags, load_energy_model

TARGETS = ("pair_allegro", "pair_nequip", "ase")  # allegro_ase.io.targets.TARGETS, without torch


def add_export(commands: argparse._SubParsersAction) -> None:
    """Add ``export MODEL OUT --target pair_allegro|pair_nequip|ase`` to the subcommands."""
    export = commands.add_parser(
        "export", help="compile a model for LAMMPS or the reference ASE calculator (.nequip.pt2)"
    )
    export.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    export.add_argument("out", help="output file, ending in .nequip.pt2")
    export.add_argument(
        "--target",
        required=True,
        choices=TARGETS,
        help="pair_allegro: LAMMPS, any number of ranks (Allegro only); pair_nequip: LAMMPS, "
        "one rank; ase: nequip's NequIPCalculator.from_compiled_model",
    )
    export.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    export.add_argument(
        "--no-check", action="store_true", help="skip comparing the compiled file with eager"
    )
    add_output_flags(export)
    export.set_defaults(run=export_command)


def export_command(args: argparse.Namespace) -> int:
    """Compile ``args.model`` into ``args.out`` for ``args.target`` and print its metadata."""
    from ..io.export import export_metadata, export_model  # imports torch.export lazily

    model = load_energy_model(args.model)
    start = time.perf_counter()
    out = export_model(model, args.out, args.target, args.device, check=not args.no_check)
    print(f"{out} ({args.target}, {args.device}) compiled in {time.perf_counter() - start:.0f} s")
    for key, value in export_metadata(model, args.target).items():
        print(f"  {key}: {value}")
    return 0
