"""Vibrational frequencies of aspirin with ``allegro-gfn2-aspirin``, beside GFN2-xTB when tblite is installed.

The molecule is relaxed (BFGS) with each method, then ``ase.vibrations.Vibrations`` builds the
Hessian from central differences of the forces (±0.01 Å) and prints the 3N - 6 = 57
frequencies in cm⁻¹ (an imaginary one is shown negative) and the zero-point energy. The
reference, GFN2-xTB, is the method the model was trained on; it runs through tblite's ASE
calculator (``pip install tblite``, or ``pip install 'allegro-ase[data]'``)::

    python examples/vibrations_aspirin.py
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.optimize import BFGS
from ase.vibrations import Vibrations

from allegro_ase import AllegroCalculator

# A hand-built aspirin (benzene ring in the xy plane, carboxylic acid in plane, acetoxy group
# twisted out of it), Å; only the connectivity and rough shape matter, as it is relaxed first.
ASPIRIN = (
    ("C", 1.390, 0.000, 0.000),
    ("C", 0.695, 1.204, 0.000),
    ("C", -0.695, 1.204, 0.000),
    ("C", -1.390, 0.000, 0.000),
    ("C", -0.695, -1.204, 0.000),
    ("C", 0.695, -1.204, 0.000),
    ("C", 2.870, 0.000, 0.000),
    ("O", 3.480, 1.057, 0.000),
    ("O", 3.540, -1.160, 0.000),
    ("H", 4.510, -1.160, 0.000),
    ("O", 1.390, 2.408, 0.000),
    ("C", 1.045, 3.005, 1.172),
    ("O", 0.445, 4.044, 1.162),
    ("C", 1.415, 2.364, 2.477),
    ("H", 1.505, 3.131, 3.246),
    ("H", 0.642, 1.651, 2.764),
    ("H", 2.367, 1.844, 2.371),
    ("H", -1.235, 2.139, 0.000),
    ("H", -2.470, 0.000, 0.000),
    ("H", -1.235, -2.139, 0.000),
    ("H", 1.235, -2.139, 0.000),
)


def aspirin() -> Atoms:
    """Build the unrelaxed aspirin molecule (21 atoms, no cell, no pbc)."""
    return Atoms([s for s, *_ in ASPIRIN], positions=[xyz for _, *xyz in ASPIRIN])


def vibrations(
    calc: Calculator, workdir: Path, name: str, fmax: float = 0.005
) -> tuple[np.ndarray, float, int]:
    """Relax aspirin with ``calc`` and compute its normal modes.

    Returns the 3N - 6 frequencies (cm⁻¹, ascending, imaginary ones negative), the zero-point
    energy (eV) and the number of relaxation steps. ``Vibrations`` caches the displaced forces
    in ``workdir / name``.
    """
    atoms = aspirin()
    atoms.calc = calc
    optimizer = BFGS(atoms, logfile=None)
    optimizer.run(fmax=fmax, steps=500)
    vib = Vibrations(atoms, name=str(workdir / name), delta=0.01, nfree=2)
    vib.run()
    freqs = vib.get_frequencies()  # complex, cm⁻¹
    signed = np.where(np.abs(freqs.imag) > np.abs(freqs.real), -freqs.imag, freqs.real)
    modes = np.sort(signed[np.argsort(np.abs(signed))[6:]])  # drop 3 translations, 3 rotations
    return modes, float(vib.get_zero_point_energy()), optimizer.nsteps


def gfn2_calculator() -> Calculator | None:
    """Return tblite's GFN2-xTB calculator as used for the training data, or None without tblite."""
    if importlib.util.find_spec("tblite") is None:
        return None
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", accuracy=0.01, verbosity=0)


def main(argv: list[str] | None = None) -> dict:
    """Print and return {method: {"frequencies" (cm⁻¹), "zpe" (eV), "steps"}}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="allegro-gfn2-aspirin", help="name of a zoo model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fmax", type=float, default=0.005, help="relaxation threshold, eV/Å")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip GFN2-xTB even if installed"
    )
    args = parser.parse_args(argv)

    calcs = {args.model: AllegroCalculator.from_pretrained(args.model, device=args.device)}
    reference = None if args.no_reference else gfn2_calculator()
    if reference is not None:
        calcs["GFN2-xTB"] = reference
    elif not args.no_reference:
        print("tblite is not installed (pip install tblite): the model only")
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for method, calc in calcs.items():
            freqs, zpe, steps = vibrations(calc, Path(workdir), method, args.fmax)
            results[method] = {"frequencies": freqs, "zpe": zpe, "steps": steps}

    methods = list(results)
    print("aspirin normal modes (cm⁻¹)")
    print(
        "mode "
        + "".join(f"{m:>22s}" for m in methods)
        + ("   difference" if len(methods) > 1 else "")
    )
    for i in range(len(results[methods[0]]["frequencies"])):
        row = [results[m]["frequencies"][i] for m in methods]
        diff = f"{row[0] - row[1]:+13.1f}" if len(row) > 1 else ""
        print(f"{i + 7:4d} " + "".join(f"{f:22.1f}" for f in row) + diff)
    print("ZPE (eV) " + "".join(f"{results[m]['zpe']:18.4f}" for m in methods))
    if len(methods) > 1:
        delta = results[methods[0]]["frequencies"] - results[methods[1]]["frequencies"]
        print(
            f"model - GFN2-xTB: mean |Δν| {np.mean(np.abs(delta)):.1f} cm⁻¹, "
            f"max |Δν| {np.max(np.abs(delta)):.1f} cm⁻¹, "
            f"ZPE {1000 * (results[methods[0]]['zpe'] - results[methods[1]]['zpe']):+.1f} meV"
        )
    return results


if __name__ == "__main__":
    main()
