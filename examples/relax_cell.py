"""Relax positions and cell of a strained, rattled Cu3Au crystal; compare with EMT.

BFGS on ``FrechetCellFilter`` (positions and the full cell together) to 0.01 eV/Å::

    python examples/relax_cell.py
"""

from __future__ import annotations

import argparse

from ase.build import bulk
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from allegro_ase import AllegroCalculator


def relaxed_lattice_constant(calc, fmax: float = 0.01, steps: int = 200) -> tuple[float, float]:
    """Cubic lattice constant (Å) and energy per atom (eV) of L1_2 Cu3Au after relaxation."""
    atoms = bulk("Cu", "fcc", a=3.9, cubic=True)  # 4 atoms, 4 % too large
    atoms.numbers[0] = 79
    atoms.rattle(0.02, seed=0)
    atoms.calc = calc
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=fmax, steps=steps)
    volume = atoms.get_volume()
    return volume ** (1 / 3), atoms.get_potential_energy() / len(atoms)


def main(argv: list[str] | None = None) -> dict:
    """Print and return lattice constant (Å) and energy (eV/atom) for EMT and the model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="allegro-emt-metals", help="name of a zoo model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps at most")
    args = parser.parse_args(argv)
    model_calc = AllegroCalculator.from_pretrained(args.model, device=args.device)
    results = {
        "EMT": relaxed_lattice_constant(EMT(), steps=args.steps),
        args.model: relaxed_lattice_constant(model_calc, steps=args.steps),
    }
    for name, (a, e) in results.items():
        print(f"{name:22s} a = {a:.4f} Å   E = {e:.4f} eV/atom")
    return results


if __name__ == "__main__":
    main()
