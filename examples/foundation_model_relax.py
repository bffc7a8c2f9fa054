"""Relax positions and cell of a multi-element crystal with a nequip.net foundation model.

python examples/foundation_model_relax.py                      # the small look-alike (CI)
python examples/foundation_model_relax.py --model nequip.net:mir-group/NequIP-OAM-L:0.1
python examples/foundation_model_relax.py --model NequIP-OAM-L-0.1.nequip.zip

By default it runs the small look-alike of NequIP-OAM-L committed for the tests (the same
module tree, 89 element types and ZBL term, but tiny widths and 4 training steps: its numbers
mean nothing). With a real foundation model (downloaded once by id, or a file you downloaded)
the same script relaxes the crystal for real. Type names of these models are chemical
symbols, so any of their 89 elements can be used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ase.build import bulk
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE

from allegro_ase import AllegroCalculator

LOOK_ALIKE = Path(__file__).resolve().parents[1] / "tests/data/foundation/nequip-oam-like.nequip.zip"


def half_heusler(a: float = 5.9):
    """Return a rattled 12-atom cubic TiNiSn (half-Heusler, C1_b) cell, 2 % too large."""
    atoms = bulk("Ti", "fcc", a=a * 1.02, cubic=True)  # Ti on 4a
    nickel = bulk("Ni", "fcc", a=a * 1.02, cubic=True)
    nickel.translate([a * 1.02 / 4] * 3)  # Ni on 4c
    tin = bulk("Sn", "fcc", a=a * 1.02, cubic=True)
    tin.translate([a * 1.02 / 2, 0, 0])  # Sn on 4b
    atoms += nickel
    atoms += tin
    atoms.rattle(0.03, seed=1)
    return atoms


def main(argv: list[str] | None = None) -> dict:
    """Relax and print energy per atom (eV), lattice constant (Å) and the largest force."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(LOOK_ALIKE), help="nequip.net id or file")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps (e.g. 300)")
    parser.add_argument("--fmax", type=float, default=0.01, help="eV/Å")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    calc = AllegroCalculator.from_nequip(args.model, device=args.device)
    atoms = half_heusler()
    atoms.calc = calc
    start = atoms.get_potential_energy() / len(atoms)
    optimizer = FIRE(FrechetCellFilter(atoms), logfile=None)
    converged = optimizer.run(fmax=args.fmax, steps=args.steps)
    result = {
        "start_energy": start,
        "energy": atoms.get_potential_energy() / len(atoms),
        "lattice_constant": atoms.get_volume() ** (1 / 3),
        "max_force": float(abs(atoms.get_forces()).max()),
        "steps": optimizer.nsteps,
        "converged": bool(converged),
    }
    print(f"model: {args.model}")
    print(
        f"{result['steps']} FIRE steps ({'converged' if converged else 'not converged'}): "
        f"E {start:.4f} -> {result['energy']:.4f} eV/atom, a = {result['lattice_constant']:.4f} Å, "
        f"max |F| = {result['max_force']:.4f} eV/Å"
    )
    return result


if __name__ == "__main__":
    main()
