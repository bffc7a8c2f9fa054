"""Many structures per model call: an NEB band and a screening relaxation, batched.

1. The Au adatom hop on Al(100) (as in ``neb_au_on_al100.py``) with
   :class:`allegro_ase.images.BatchedImages`: every optimiser step evaluates all moving images
   in one model call, and the end points only once. The barrier equals the serial NEB's.
2. :func:`allegro_ase.images.relax_many`: Cu-Au alloy cells of random composition relaxed
   together (positions and cell), one model call per step, their mixing energies beside EMT's.

Batching saves little on one CPU thread for structures of ~100 atoms (see
``benchmarks/batch_timing.py``); it pays for many tiny structures and on a GPU.

    python examples/batched_neb_and_screening.py            # CI size
    python examples/batched_neb_and_screening.py --full     # 7 images, 24 alloys
"""

from __future__ import annotations

import argparse

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.filters import UnitCellFilter
from ase.mep import NEB
from ase.optimize import BFGS, FIRE, QuasiNewton
from neb_au_on_al100 import band_barrier, endpoints

from allegro_ase import AllegroCalculator
from allegro_ase.images import BatchedImages, relax_many


def batched_neb(calc: AllegroCalculator, n_images: int, fmax: float) -> tuple[float, int]:
    """Barrier (eV) of the Au hop and the number of batched model calls it took."""
    initial, final = endpoints()
    for atoms in (initial, final):
        atoms.calc = calc
        QuasiNewton(atoms, logfile=None).run(fmax=fmax)
    images = [initial] + [initial.copy() for _ in range(n_images)] + [final]
    group = BatchedImages(calc, images)
    neb = NEB(images, method="improvedtangent")
    neb.interpolate()
    BFGS(neb, logfile=None).run(fmax=fmax, steps=300)
    return band_barrier(images), group.num_calls


def alloys(count: int, seed: int = 0) -> list:
    """Random 2x2x2 fcc Cu-Au cells (32 atoms), Au fraction 0 to 1, Vegard lattice constant."""
    rng = np.random.default_rng(seed)
    structures = []
    for fraction in np.linspace(0.0, 1.0, count):
        atoms = bulk("Cu", "fcc", a=3.59 + fraction * (4.06 - 3.59), cubic=True) * 2
        atoms.numbers[rng.permutation(len(atoms))[: round(fraction * len(atoms))]] = 79
        atoms.rattle(0.02, seed=int(rng.integers(1 << 31)))
        structures.append(atoms)
    return structures


def mixing_energy(atoms, pure: dict) -> float:
    """Energy per atom (eV) relative to the pure fcc crystals."""
    reference = sum(pure[number] for number in atoms.numbers)
    return (atoms.get_potential_energy() - reference) / len(atoms)


def emt_relaxed(atoms):
    """Return a copy of ``atoms`` with positions and cell relaxed by EMT.

    (UnitCellFilter: FrechetCellFilter's matrix logarithm would draw from numpy's global
    random generator, which an example should leave alone; relax_many restores it.)
    """
    atoms = atoms.copy()
    atoms.calc = EMT()
    FIRE(UnitCellFilter(atoms), logfile=None).run(fmax=0.01, steps=500)
    return atoms


def main(argv: list[str] | None = None) -> dict:
    """Print and return the batched NEB barrier and the screening's mixing energies."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="allegro-emt-metals")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--alloys", type=int, default=5, help="structures to relax together")
    parser.add_argument("--full", action="store_true", help="7 NEB images, 24 alloys")
    args = parser.parse_args(argv)
    calc = AllegroCalculator.from_pretrained(args.model, device=args.device)
    n_images, count = (7, 24) if args.full else (3, args.alloys)

    barrier, calls = batched_neb(calc, n_images, fmax=0.05)
    print(f"NEB, {n_images} images batched: barrier {barrier:.3f} eV in {calls} model calls")

    structures = alloys(count)
    converged = relax_many(structures, calc, fmax=0.01, steps=300, relax_cell=True)
    pure = {}
    for number, symbol in ((29, "Cu"), (79, "Au")):
        crystal = bulk(symbol, "fcc", a=3.6 if symbol == "Cu" else 4.07)
        relax_many([crystal], calc, fmax=0.001, relax_cell=True)
        pure[number] = crystal.get_potential_energy()
    model = [mixing_energy(atoms, pure) for atoms in structures]
    emt_pure = {n: emt_relaxed(bulk(s, "fcc", a=3.6)).get_potential_energy()
                for n, s in ((29, "Cu"), (79, "Au"))}  # fmt: skip
    emt = [mixing_energy(emt_relaxed(atoms), emt_pure) for atoms in alloys(count)]
    print(f"relaxed together: {sum(converged)} of {count} converged")
    print(" x_Au   model (meV/atom)   EMT (meV/atom)")
    for atoms, e_model, e_emt in zip(structures, model, emt, strict=True):
        fraction = np.mean(atoms.numbers == 79)
        print(f" {fraction:4.2f}   {1000 * e_model:10.1f}   {1000 * e_emt:14.1f}")
    return {"barrier": barrier, "neb_calls": calls, "converged": converged,
            "mixing_model": model, "mixing_emt": emt}  # fmt: skip


if __name__ == "__main__":
    main()
