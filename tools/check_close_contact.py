#!/usr/bin/env python
"""Close contact: dimer energies and an atom pushed onto its neighbour, models against EMT.

Prints two markdown tables for the EMT zoo models (zoo names or ``.pt`` files):

* the energy (eV, EMT's zero: the fcc crystals) of an isolated dimer of each element pair at
  0.8, 1.0, 1.5 and 2.0 Å;
* the energy change when one atom of a 32-atom fcc cell is moved along the bond towards a
  nearest neighbour until they are 2.0, 1.5, 1.0 or 0.8 Å apart (Cu, Au; EMT lattice constants).

::

    python tools/check_close_contact.py allegro-emt-metals nequip-emt-metals
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from allegro_ase import AllegroCalculator

ELEMENTS = ("Al", "Cu", "Ag", "Au")
DIMER_DISTANCES = (0.8, 1.0, 1.5, 2.0)  # Å
PUSH_DISTANCES = (2.0, 1.5, 1.0, 0.8)  # Å
EMT_LATTICE = {"Cu": 3.5935, "Au": 4.0618}  # Å, tools/README.md


def calculator(name: str) -> AllegroCalculator:
    """A float32 CPU calculator of a zoo name or model file."""
    if name.endswith(".pt"):
        return AllegroCalculator.from_file(name, device="cpu")
    return AllegroCalculator.from_pretrained(name, device="cpu")


def dimer_energy(pair: tuple[str, str], r: float, calc) -> float:
    atoms = Atoms("".join(pair), positions=[[0, 0, 0], [0, 0, r]])
    atoms.calc = calc
    return float(atoms.get_potential_energy())


def pushed_energy(element: str, d: float | None, calc) -> float:
    """Energy of the 2x2x2 cubic cell with atom 0 moved to ``d`` Å from atom 1 (None: ideal)."""
    atoms = bulk(element, "fcc", a=EMT_LATTICE[element], cubic=True).repeat((2, 2, 2))
    if d is not None:
        bond = atoms.get_distance(0, 1, mic=True, vector=True)
        atoms.positions[0] = atoms.positions[0] + bond * (1.0 - d / np.linalg.norm(bond))
    atoms.calc = calc
    return float(atoms.get_potential_energy())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    args = parser.parse_args(argv)
    calcs = {"EMT": EMT(), **{name: calculator(name) for name in args.models}}
    print("Dimer energy (eV): " + " / ".join(calcs))
    print()
    print("| pair | " + " | ".join(f"{r} Å" for r in DIMER_DISTANCES) + " |")
    print("|---" * (len(DIMER_DISTANCES) + 1) + "|")
    for pair in itertools.combinations_with_replacement(ELEMENTS, 2):
        cells = [
            " / ".join(f"{dimer_energy(pair, r, c):.1f}" for c in calcs.values())
            for r in DIMER_DISTANCES
        ]
        print(f"| {''.join(pair)} | " + " | ".join(cells) + " |")
    print()
    print("Atom pushed towards a neighbour in fcc bulk, energy change (eV): " + " / ".join(calcs))
    print()
    print("| element | " + " | ".join(f"{d} Å" for d in PUSH_DISTANCES) + " |")
    print("|---" * (len(PUSH_DISTANCES) + 1) + "|")
    for element in EMT_LATTICE:
        ideal = {name: pushed_energy(element, None, c) for name, c in calcs.items()}
        cells = [
            " / ".join(f"{pushed_energy(element, d, c) - ideal[n]:.1f}" for n, c in calcs.items())
            for d in PUSH_DISTANCES
        ]
        print(f"| {element} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
