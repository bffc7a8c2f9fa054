"""Cubic elastic constants C11, C12, C44 of Cu and Cu3Au from the stress under small strains: model against EMT.

The cubic cell is first relaxed to zero stress with each method. Each constant is then the
slope of a stress component against one strain component (finite strain, linear fit):
C11 = dσ_xx/dε_xx, C12 = dσ_yy/dε_xx, C44 = dσ_yz/dγ_yz with the engineering shear
γ_yz = 2 ε_yz. Every atom of fcc and L1_2 is a centre of inversion, so the atoms do not relax
inside a homogeneously strained cell. ASE's sign: positive stress is tensile::

    python examples/elastic_constants.py --full
"""

from __future__ import annotations

import argparse

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from ase.units import GPa

from allegro_ase import AllegroCalculator

VOIGT = {"xx": (0, 0), "yy": (1, 1), "zz": (2, 2), "yz": (1, 2), "xz": (0, 2), "xy": (0, 1)}


def crystal(name: str) -> Atoms:
    """Build the 4-atom cubic cell of ``"Cu"`` (fcc) or ``"Cu3Au"`` (L1_2, Au on the corners)."""
    atoms = bulk("Cu", "fcc", a=3.6 if name == "Cu" else 3.75, cubic=True)
    if name == "Cu3Au":
        atoms.numbers[0] = 79
    elif name != "Cu":
        raise ValueError(f"unknown crystal {name!r}: use 'Cu' or 'Cu3Au'")
    return atoms


def relaxed(atoms: Atoms, calc: Calculator, fmax: float = 1e-4) -> Atoms:
    """Return a copy of ``atoms`` with its cell scaled to zero pressure."""
    atoms = atoms.copy()
    atoms.calc = calc
    BFGS(FrechetCellFilter(atoms, hydrostatic_strain=True), logfile=None).run(fmax=fmax, steps=100)
    return atoms


def stress_slope(atoms: Atoms, strain: str, stress: str, amplitudes: np.ndarray) -> float:
    """Slope dσ/dε (eV/Å³) of Voigt ``stress`` against the tensor strain component ``strain``.

    The strained cell is ``cell @ (1 + ε)``, ε symmetric with ε[i, j] = ε[j, i] = amplitude.
    """
    cell = atoms.get_cell().array
    i, j = VOIGT[strain]
    sigma = []
    for amplitude in amplitudes:
        eps = np.zeros((3, 3))
        eps[i, j] = eps[j, i] = amplitude
        strained = atoms.copy()
        strained.calc = atoms.calc
        strained.set_cell(cell @ (np.eye(3) + eps), scale_atoms=True)
        sigma.append(strained.get_stress()[list(VOIGT).index(stress)])
    return float(np.polyfit(amplitudes, sigma, 1)[0])


def elastic_constants(atoms: Atoms, amplitudes: np.ndarray) -> dict:
    """C11, C12, C44 and B = (C11 + 2 C12) / 3 in GPa of a relaxed cubic crystal."""
    c11 = stress_slope(atoms, "xx", "xx", amplitudes)
    c12 = stress_slope(atoms, "xx", "yy", amplitudes)
    c44 = stress_slope(atoms, "yz", "yz", amplitudes) / 2  # per engineering shear strain
    c = {"C11": c11 / GPa, "C12": c12 / GPa, "C44": c44 / GPa}
    c["B"] = (c["C11"] + 2 * c["C12"]) / 3
    return c


def main(argv: list[str] | None = None) -> dict:
    """Print and return {crystal: {method: {C11, C12, C44, B}}} in GPa for EMT and the model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="allegro-emt-metals", help="name of a zoo model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--strain", type=float, default=0.005, help="largest strain (default 0.5 %%)"
    )
    parser.add_argument("--full", action="store_true", help="5 strains in ±1 %% instead of 2")
    parser.add_argument("--crystals", nargs="+", default=["Cu", "Cu3Au"])
    args = parser.parse_args(argv)
    if args.full:
        amplitudes = np.linspace(-0.01, 0.01, 5)
    else:
        amplitudes = np.array([-args.strain, args.strain])

    calcs = {
        "EMT": EMT(),
        args.model: AllegroCalculator.from_pretrained(args.model, device=args.device),
    }
    results = {
        name: {
            method: elastic_constants(relaxed(crystal(name), calc), amplitudes)
            for method, calc in calcs.items()
        }
        for name in args.crystals
    }
    print(
        f"{'crystal':8s} {'method':20s}"
        + "".join(f"{k + ' (GPa)':>11s}" for k in ("C11", "C12", "C44", "B"))
    )
    for name, by_method in results.items():
        for method, c in by_method.items():
            print(f"{name:8s} {method:20s}" + "".join(f"{v:11.1f}" for v in c.values()))
        model, emt = by_method[args.model], by_method["EMT"]
        print(
            f"{name:8s} model / EMT - 1:    "
            + "".join(f"{100 * (model[k] / emt[k] - 1):+10.1f}%" for k in model)
        )
    return results


if __name__ == "__main__":
    main()
