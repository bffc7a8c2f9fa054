"""Barrier of an Au adatom hopping between hollow sites on Al(100): model against EMT.

The ASE tutorial system (a 2x2x3 Al(100) slab, Au in the hollow site). EMT, the method the
``allegro-emt-metals`` model was trained on, gives about 0.37 eV; the model should agree
within a few tens of meV::

    python examples/neb_au_on_al100.py
"""

from __future__ import annotations

import argparse
import copy

from ase.build import add_adsorbate, fcc100
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.mep import NEB
from ase.optimize import BFGS, QuasiNewton

from allegro_ase import AllegroCalculator


def endpoints() -> tuple:
    """Unrelaxed initial and final states: Au in two neighbouring hollow sites."""
    slab = fcc100("Al", size=(2, 2, 3))
    add_adsorbate(slab, "Au", 1.7, "hollow")
    slab.center(axis=2, vacuum=4.0)
    slab.set_constraint(FixAtoms(mask=[atom.tag > 1 for atom in slab]))  # fix layers 2 and 3
    final = slab.copy()
    final[-1].x += final.get_cell()[0, 0] / 2
    return slab, final


def neb_barrier(
    initial, final, make_calc, n_images: int = 3, fmax: float = 0.05, climb: bool = False
) -> float:
    """NEB barrier (eV) from ``initial`` to ``final``, both relaxed first (in place).

    ``make_calc()`` gives one calculator per image.
    """
    for atoms in (initial, final):
        atoms.calc = make_calc()
        QuasiNewton(atoms, logfile=None).run(fmax=fmax)
    images = [initial] + [initial.copy() for _ in range(n_images)] + [final]
    for image in images[1:-1]:
        image.calc = make_calc()
    neb = NEB(images, method="improvedtangent", climb=climb)
    neb.interpolate()
    BFGS(neb, logfile=None).run(fmax=fmax, steps=300)
    energies = [image.get_potential_energy() for image in images]
    return max(energies) - energies[0]


def barrier(make_calc, n_images: int = 3, fmax: float = 0.05) -> float:
    """Barrier (eV) of the Au hop; ``make_calc()`` gives one calculator per image."""
    return neb_barrier(*endpoints(), make_calc, n_images, fmax)


def main(argv: list[str] | None = None) -> dict:
    """Print and return the EMT and model barriers (eV)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="allegro-emt-metals", help="name of a zoo model")
    args = parser.parse_args(argv)
    shared = AllegroCalculator.from_pretrained(args.model, device="cpu")
    barriers = {
        "EMT": barrier(EMT),
        args.model: barrier(lambda: copy.copy(shared)),  # copies share the weights
    }
    for name, value in barriers.items():
        print(f"{name:22s} barrier {value:.3f} eV")
    print(f"difference {1000 * (barriers[args.model] - barriers['EMT']):+.1f} meV")
    return barriers


if __name__ == "__main__":
    main()
