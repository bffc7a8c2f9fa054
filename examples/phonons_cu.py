"""Phonon band structure and density of states of fcc Cu with ``ase.phonons``: model against EMT.

Force constants come from finite displacements of one atom in an N x N x N supercell of the
primitive cell. With even N the X point is commensurate with the supercell, so the frequencies
there are exact for each method whatever the range of its force constants; the band between
special points is Fourier-interpolated and needs N large enough for the 6 Å cutoff (N = 7, as
in ASE's tutorial)::

    python examples/phonons_cu.py --full --plot phonons_cu.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.calculator import Calculator
from ase.calculators.emt import EMT
from ase.phonons import Phonons

from allegro_ase import AllegroCalculator
from allegro_ase.plots import THZ_PER_EV

BANDPATH = "GXWKGLUWLK"


def phonons(calc: Calculator, supercell: int, workdir: Path, name: str) -> Phonons:
    """Compute and read the force constants of fcc Cu (a = 3.6 Å) with ``calc``.

    ``ase.phonons`` keeps one file per displacement in ``workdir / name``.
    """
    atoms = bulk("Cu", "fcc", a=3.6)
    ph = Phonons(atoms, calc, supercell=(supercell,) * 3, delta=0.01, name=str(workdir / name))
    ph.run()
    ph.read(acoustic=True)
    return ph


def frequencies_thz(ph: Phonons, kpoints: np.ndarray) -> np.ndarray:
    """Phonon frequencies (THz), (K, 3), at scaled k-points (K, 3) of the primitive cell."""
    return ph.band_structure(kpoints) * THZ_PER_EV


def main(argv: list[str] | None = None) -> dict:
    """Print and return the frequencies (THz) at X and L and the DOS peak for EMT and the model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="allegro-emt-metals", help="name of a zoo model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--supercell", type=int, default=4, help="N of the N x N x N supercell")
    parser.add_argument("--full", action="store_true", help="7 x 7 x 7 supercell, finer DOS")
    parser.add_argument("--plot", metavar="PATH", help="write bands and DOS to PATH")
    args = parser.parse_args(argv)
    supercell, kmesh = (7, 40) if args.full else (args.supercell, 16)

    calcs = {
        "EMT": EMT(),
        args.model: AllegroCalculator.from_pretrained(args.model, device=args.device),
    }
    special = bulk("Cu", "fcc", a=3.6).cell.bandpath().special_points
    results, bands, dos = {}, {}, {}
    with tempfile.TemporaryDirectory() as workdir:
        for method, calc in calcs.items():
            ph = phonons(calc, supercell, Path(workdir), method)
            freqs = frequencies_thz(ph, np.array([special["X"], special["L"]]))
            grid = ph.get_dos(kpts=(kmesh,) * 3, verbose=False).sample_grid(200, width=5e-4)
            results[method] = {
                "X": np.sort(freqs[0]),  # TA, TA, LA at X
                "L": np.sort(freqs[1]),
                "dos_peak": float(grid.get_energies()[np.argmax(grid.get_weights())] * THZ_PER_EV),
            }
            if args.plot:
                path = ph.atoms.cell.bandpath(BANDPATH, npoints=200)
                bands[method] = ph.get_band_structure(path, verbose=False)
                dos[method] = (grid.get_energies(), grid.get_weights())

    print(f"fcc Cu, {supercell}x{supercell}x{supercell} supercell; frequencies in THz")
    print(
        f"{'method':20s} {'X: TA':>7s} {'X: LA':>7s} {'L: TA':>7s} {'L: LA':>7s} {'DOS peak':>9s}"
    )
    for method, r in results.items():
        x, lp = r["X"], r["L"]
        print(
            f"{method:20s} {x[0]:7.3f} {x[2]:7.3f} {lp[0]:7.3f} {lp[2]:7.3f} {r['dos_peak']:9.3f}"
        )
    ratio = results[args.model]["X"][2] / results["EMT"]["X"][2]
    print(f"LA at X, model / EMT - 1: {100 * (ratio - 1):+.1f} %")
    if args.plot:
        from allegro_ase.plots import phonon_bands

        print(f"plot: {phonon_bands(bands, args.plot, dos)}")
    return results


if __name__ == "__main__":
    main()
