"""Add DFT-D3 dispersion to a model with ASE's ``SumCalculator``; Cu lattice constant with and without it.

A potential trained on a density functional without dispersion (PBE, say) is usually run with
a D3 correction on top: energy, forces and stress are the sums of the two calculators'. This
script shows the wiring with simple-dftd3's ASE calculator (``pip install dftd3``, or
``pip install 'allegro-ase[d3]'``), D3(BJ) with PBE parameters, and relaxes the cell of fcc Cu
with and without it, for the model and for EMT (its reference method) alike.

Only the mechanics carry over: the shipped models reproduce EMT, which is fitted to experiment
and already contains the binding that D3 adds, so here D3 is counted twice and the crystal comes
out too dense. The point is that the model and EMT move by the same amount::

    python examples/dispersion_d3.py
"""

from __future__ import annotations

import argparse

from ase.build import bulk
from ase.calculators.calculator import Calculator
from ase.calculators.emt import EMT
from ase.calculators.mixing import SumCalculator
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from allegro_ase import AllegroCalculator


def d3_calculator(method: str = "PBE", damping: str = "d3bj") -> Calculator:
    """Return simple-dftd3's ASE calculator; raise ImportError naming the package if missing."""
    try:
        from dftd3.ase import DFTD3
    except ImportError as err:
        raise ImportError(
            "this example needs simple-dftd3's Python package: pip install dftd3 "
            "(or pip install 'allegro-ase[d3]')"
        ) from err
    return DFTD3(method=method, damping=damping)


def relaxed_cu(calc: Calculator, fmax: float = 1e-4, steps: int = 100) -> tuple[float, float]:
    """Lattice constant (Å) and energy (eV/atom) of fcc Cu relaxed to zero pressure with ``calc``."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.calc = calc
    BFGS(FrechetCellFilter(atoms, hydrostatic_strain=True), logfile=None).run(
        fmax=fmax, steps=steps
    )
    return atoms.get_volume() ** (1 / 3), atoms.get_potential_energy() / len(atoms)


def main(argv: list[str] | None = None) -> dict:
    """Print and return {label: (a0 Å, E eV/atom)} for the model and EMT, each with and without D3."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="allegro-emt-metals", help="name of a zoo model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--functional", default="PBE", help="D3 parameters of this functional")
    parser.add_argument("--steps", type=int, default=100, help="cell relaxation steps at most")
    args = parser.parse_args(argv)

    model = AllegroCalculator.from_pretrained(args.model, device=args.device)
    calcs = {
        args.model: model,
        f"{args.model} + D3": SumCalculator([model, d3_calculator(args.functional)]),
        "EMT": EMT(),
        "EMT + D3": SumCalculator([EMT(), d3_calculator(args.functional)]),
    }
    results = {label: relaxed_cu(calc, steps=args.steps) for label, calc in calcs.items()}
    print(f"fcc Cu relaxed to zero pressure; D3(BJ) with {args.functional} parameters")
    for label, (a, e) in results.items():
        print(f"{label:30s} a = {a:.4f} Å   E = {e:+.4f} eV/atom")
    shift_model = results[f"{args.model} + D3"][0] - results[args.model][0]
    shift_emt = results["EMT + D3"][0] - results["EMT"][0]
    print(f"D3 changes a by {shift_model:+.4f} Å with the model, {shift_emt:+.4f} Å with EMT")
    return results


if __name__ == "__main__":
    main()
