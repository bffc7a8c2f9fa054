"""Equation of state of fcc Cu and L1_2 Cu3Au: bulk modulus and lattice constant, model against EMT.

Energies of the cubic cell at volumes around the minimum are fitted with ASE's
``EquationOfState`` (Birch-Murnaghan); EMT is the method ``allegro-emt-metals`` was trained on::

    python examples/eos.py --full --plot eos.png
"""

from __future__ import annotations

import argparse

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from ase.units import GPa

from allegro_ase import AllegroCalculator

EOS = "birchmurnaghan"


def crystal(name: str) -> Atoms:
    """Build the 4-atom cubic cell of ``"Cu"`` (fcc, a = 3.6 Å) or ``"Cu3Au"`` (L1_2, a = 3.75 Å)."""
    if name == "Cu":
        return bulk("Cu", "fcc", a=3.6, cubic=True)
    if name == "Cu3Au":
        atoms = bulk("Cu", "fcc", a=3.75, cubic=True)
        atoms.numbers[0] = 79  # Au on the cube corners
        return atoms
    raise ValueError(f"unknown crystal {name!r}: use 'Cu' or 'Cu3Au'")


def energy_volume(
    atoms: Atoms, calc: Calculator, points: int = 7, strain: float = 0.03
) -> tuple[np.ndarray, np.ndarray]:
    """Volumes (Å³/atom) and energies (eV/atom) of ``atoms`` scaled by 1 ± ``strain`` in length."""
    atoms = atoms.copy()
    atoms.calc = calc
    cell = atoms.get_cell()
    volumes, energies = [], []
    for scale in np.linspace(1 - strain, 1 + strain, points):
        atoms.set_cell(cell * scale, scale_atoms=True)
        volumes.append(atoms.get_volume() / len(atoms))
        energies.append(atoms.get_potential_energy() / len(atoms))
    return np.array(volumes), np.array(energies)


def fit(volumes: np.ndarray, energies: np.ndarray) -> dict:
    """Fitted volume V0 (Å³/atom), cubic lattice constant a0 (Å), E0 (eV/atom), B (GPa)."""
    v0, e0, b = EquationOfState(volumes, energies, EOS).fit()
    return {"V0": v0, "a0": (4 * v0) ** (1 / 3), "E0": e0, "B": b / GPa}


def main(argv: list[str] | None = None) -> dict:
    """Print and return {crystal: {method: fit(...)}} for EMT and the model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="allegro-emt-metals", help="name of a zoo model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, default=7, help="volumes per curve")
    parser.add_argument("--full", action="store_true", help="21 volumes, ±5 %% in length")
    parser.add_argument("--crystals", nargs="+", default=["Cu", "Cu3Au"])
    parser.add_argument("--plot", metavar="PATH", help="write the E(V) curves to PATH")
    args = parser.parse_args(argv)
    points, strain = (21, 0.05) if args.full else (args.points, 0.03)

    calcs = {
        "EMT": EMT(),
        args.model: AllegroCalculator.from_pretrained(args.model, device=args.device),
    }
    results, curves = {}, {}
    for name in args.crystals:
        results[name] = {}
        for method, calc in calcs.items():
            volumes, energies = energy_volume(crystal(name), calc, points, strain)
            curves[f"{name} {method}"] = (volumes, energies)
            results[name][method] = fit(volumes, energies)
    print(f"{'crystal':8s} {'method':20s} {'a0 (Å)':>8s} {'E0 (eV/atom)':>13s} {'B (GPa)':>8s}")
    for name, by_method in results.items():
        for method, r in by_method.items():
            print(f"{name:8s} {method:20s} {r['a0']:8.4f} {r['E0']:13.4f} {r['B']:8.1f}")
        diff = by_method[args.model]["B"] - by_method["EMT"]["B"]
        print(f"{name:8s} bulk modulus, model - EMT: {diff:+.1f} GPa")
    if args.plot:
        from allegro_ase.plots import equation_of_state

        print(f"plot: {equation_of_state(curves, args.plot, EOS)}")
    return results


if __name__ == "__main__":
    main()
