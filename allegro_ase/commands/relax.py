"""``allegro-ase relax MODEL STRUCTURE``: relax positions, and the cell with ``--cell``.

The cell is relaxed through ASE's ``FrechetCellFilter`` (its generalised forces include the
stress times the volume, so ``--fmax`` bounds both); constraints of the structure file are kept.
Exit status 3 (results still written) when ``--fmax`` is not reached within ``--steps``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .common import (
    CommandError,
    add_model_flags,
    load_calculator,
    positive_float,
    positive_int,
    progress_bar,
    read_structure,
    write_frames,
)

logger = logging.getLogger("allegro_ase.cli")
OPTIMIZERS = ("fire", "bfgs")
NOT_CONVERGED = 3  # exit status: ran to --steps without reaching --fmax


def add_optimizer_flags(parser: argparse.ArgumentParser, steps: int) -> None:
    """Add ``--optimizer``, ``--fmax``, ``--steps`` and ``--log`` (shared with ``neb``)."""
    group = parser.add_argument_group("optimizer")
    group.add_argument("--optimizer", choices=OPTIMIZERS, default="fire", help="default: fire")
    group.add_argument(
        "--fmax", type=positive_float, default=0.05, help="target max force, eV/Å (default: 0.05)"
    )
    group.add_argument(
        "--steps", type=positive_int, default=steps, help=f"most steps (default: {steps})"
    )
    group.add_argument("--log", help="the optimizer's step-by-step log")


def add_relax(commands: argparse._SubParsersAction) -> None:
    """Add ``relax MODEL STRUCTURE`` to the subcommands."""
    parser = commands.add_parser(
        "relax",
        help="relax positions (and the cell with --cell)",
        description="Relax the positions of STRUCTURE (and its cell with --cell) until every "
        "force is below --fmax; print the final energy, fmax and steps. Exit status 3 when "
        "not converged within --steps (the structure is still written).",
    )
    add_model_flags(parser)
    parser.add_argument("structure", metavar="STRUCTURE", help="any file ASE reads (last frame)")
    parser.add_argument(
        "--cell", action="store_true", help="relax the cell too (ASE's FrechetCellFilter)"
    )
    parser.add_argument(
        "--pressure", type=float, default=0.0, help="GPa, external pressure with --cell"
    )
    add_optimizer_flags(parser, steps=500)
    parser.add_argument(
        "-o",
        "--out",
        help="the relaxed structure (default: STRUCTURE's stem + -relaxed.extxyz, here)",
    )
    parser.add_argument("--traj", help="trajectory of the optimizer's steps (.traj)")
    parser.set_defaults(run=relax_command)


def relax_command(args: argparse.Namespace) -> int:
    """Relax ``args.structure``, write it and print energy, fmax and steps."""
    import numpy as np

    atoms = read_structure(args.structure)
    if args.cell and not (atoms.pbc.any() and abs(atoms.cell.volume) > 0):
        raise CommandError(
            f"--cell needs a periodic structure with a cell; {args.structure} has pbc "
            f"{atoms.pbc.tolist()} and volume {abs(atoms.cell.volume):g} Å³."
        )
    atoms.calc = load_calculator(args)
    target = atoms
    if args.cell:
        from ase.filters import FrechetCellFilter
        from ase.units import GPa

        target = FrechetCellFilter(atoms, scalar_pressure=args.pressure * GPa)
    start = time.perf_counter()
    converged, steps = optimize(target, args, "relax", args.traj)
    out = args.out or f"{Path(args.structure).stem}-relaxed.extxyz"
    write_frames(out, atoms)
    forces = np.linalg.norm(atoms.get_forces(), axis=1).max()
    energy = atoms.get_potential_energy()
    print(
        f"{'converged' if converged else 'NOT converged'} in {steps} steps "
        f"({time.perf_counter() - start:.1f} s): E = {energy:.6f} eV "
        f"({energy / len(atoms):.6f} eV/atom), fmax = {forces:.4f} eV/Å"
        + (f", fmax with cell = {fmax_of(target):.4f}" if args.cell else "")
    )
    if args.cell:
        stress = atoms.get_stress() / 1e-3  # eV/Å³ -> meV/Å³
        print(
            f"cell: a, b, c = {' '.join(f'{x:.4f}' for x in atoms.cell.lengths())} Å, "
            f"volume = {atoms.get_volume():.3f} Å³, stress = "
            f"[{' '.join(f'{s:.3f}' for s in stress)}] meV/Å³"
        )
    print(f"relaxed structure: {out}")
    if not converged:
        print(
            f"allegro-ase: relax did not converge: fmax {fmax_of(target):.4f} > {args.fmax} "
            f"eV/Å after {steps} steps (raise --steps, or continue from {out})",
            file=sys.stderr,
        )
        return NOT_CONVERGED
    return 0


def optimize(
    target, args: argparse.Namespace, description: str, trajectory: str | None = None
) -> tuple[bool, int]:
    """Run ``args.optimizer`` on ``target`` (atoms, filter or NEB); return (converged, steps).

    A progress bar shows the steps and the current fmax (eV/Å) unless ``args.quiet``; the
    optimizer writes ``args.log`` and every step to ``trajectory`` when they are given.
    """
    from ase.optimize import BFGS, FIRE

    optimizer_class = {"fire": FIRE, "bfgs": BFGS}[args.optimizer]
    with (
        progress_bar(args.steps, description, args.quiet) as bar,
        optimizer_class(target, logfile=args.log, trajectory=trajectory) as optimizer,
    ):

        def tick() -> None:
            bar.update(optimizer.nsteps - bar.n)
            bar.set_postfix(fmax=f"{fmax_of(target):.4f}", refresh=False)

        optimizer.attach(tick, interval=1)
        converged = bool(optimizer.run(fmax=args.fmax, steps=args.steps))
    return converged, optimizer.nsteps


def fmax_of(target) -> float:
    """Return the largest force (eV/Å) of ``target``, as the optimizer's criterion sees it."""
    import numpy as np

    forces = np.asarray(target.get_forces()).reshape(-1, 3)
    return float(np.sqrt((forces**2).sum(axis=1)).max()) if len(forces) else 0.0
