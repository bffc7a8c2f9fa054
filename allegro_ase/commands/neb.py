"""``allegro-ase neb MODEL INITIAL FINAL``: a nudged elastic band and its barrier.

The images share one loaded model through :class:`allegro_ase.images.BatchedImages`: every
optimiser step evaluates all moved images in one model call (the end points once). ASE's ``NEB`` with the improved tangent; ``--climb`` turns on the climbing image. The barrier
is taken at the highest image: forward = max(E) - E(initial), backward = max(E) - E(final).
Exit status 3 (band and barrier still written) when ``--fmax`` is not reached in ``--steps``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import logging
import sys

from .common import (
    CommandError,
    add_model_flags,
    load_calculator,
    positive_int,
    read_structure,
    write_frames,
)
from .relax import NOT_CONVERGED, add_optimizer_flags, optimize

logger = logging.getLogger("allegro_ase.cli")


def add_neb(commands: argparse._SubParsersAction) -> None:
    """Add ``neb MODEL INITIAL FINAL`` to the subcommands."""
    parser = commands.add_parser(
        "neb",
        help="nudged elastic band between two structures; prints the barrier",
        description="Interpolate --images images between INITIAL and FINAL (same atoms in the "
        "same order), optimise the band and print the forward and backward barriers (eV).",
    )
    add_model_flags(parser)
    parser.add_argument("initial", metavar="INITIAL", help="any file ASE reads (last frame)")
    parser.add_argument("final", metavar="FINAL", help="any file ASE reads (last frame)")
    group = parser.add_argument_group("band")
    group.add_argument(
        "--images", type=positive_int, default=5, help="images between the ends (default: 5)"
    )
    group.add_argument("--climb", action="store_true", help="climbing image")
    group.add_argument(
        "--interpolation",
        choices=("linear", "idpp"),
        default="linear",
        help="initial path (default: linear)",
    )
    group.add_argument(
        "--relax-endpoints",
        action="store_true",
        help="relax INITIAL and FINAL first (same optimizer and --fmax)",
    )
    add_optimizer_flags(parser, steps=500)
    parser.add_argument("--traj", help="the final band, initial state first (.traj, .extxyz)")
    parser.add_argument("--plot", help="energy along the band (.png, .pdf); needs matplotlib")
    parser.set_defaults(run=neb_command)


def neb_command(args: argparse.Namespace) -> int:
    """Optimise the band of ``args`` and print its energies and barriers."""
    from ase.mep import NEB

    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise CommandError("--plot needs matplotlib: pip install 'allegro-ase[plot]'.")
    initial, final = read_structure(args.initial), read_structure(args.final)
    if initial.get_chemical_symbols() != final.get_chemical_symbols():
        raise CommandError(
            f"INITIAL ({initial.get_chemical_formula()}, {len(initial)} atoms) and FINAL "
            f"({final.get_chemical_formula()}, {len(final)} atoms) must hold the same atoms "
            "in the same order."
        )
    shared = load_calculator(args)
    if args.relax_endpoints:
        for name, atoms in (("initial", initial), ("final", final)):
            atoms.calc = copy.copy(shared)
            converged, steps = optimize(atoms, args, f"relax {name}")
            if not converged:
                logger.warning("the %s state did not converge in %d steps", name, steps)
    images = [initial, *(initial.copy() for _ in range(args.images)), final]
    from ..images import BatchedImages

    BatchedImages(shared, images)  # one model call per step for all moved images
    band = NEB(images, climb=args.climb, method="improvedtangent")
    band.interpolate(method=args.interpolation)
    converged, steps = optimize(band, args, "neb")
    energies = [image.get_potential_energy() for image in images]
    forward, backward = max(energies) - energies[0], max(energies) - energies[-1]
    print(f"{'image':>5s} {'energy (eV)':>14s} {'E - E0 (eV)':>12s}")
    for k, energy in enumerate(energies):
        print(f"{k:5d} {energy:14.6f} {_rounded(energy - energies[0], 6):12.6f}")
    print(
        f"barrier: forward {forward:.4f} eV, backward {backward:.4f} eV "
        f"(reaction energy {_rounded(energies[-1] - energies[0], 4):+.4f} eV); "
        f"{'converged' if converged else 'NOT converged'} in {steps} steps"
        + (", climbing image" if args.climb else "")
    )
    if args.traj:
        write_frames(args.traj, images)
        print(f"band: {args.traj}")
    if args.plot:
        from ..plots import neb_band

        neb_band({args.model: images}, args.plot)
        print(f"band plot: {args.plot}")
    if not converged:
        print(
            f"allegro-ase: neb did not converge: fmax above {args.fmax} eV/Å after {steps} "
            "steps (raise --steps)",
            file=sys.stderr,
        )
        return NOT_CONVERGED
    return 0


def _rounded(value: float, digits: int) -> float:
    """Return ``value`` rounded to ``digits`` decimals, without a negative zero."""
    return round(value, digits) or 0.0
