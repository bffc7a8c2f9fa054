"""Energy barriers of EMT zoo models against EMT itself: the NEB table of their model cards.

    OMP_NUM_THREADS=1 python tools/check_barriers.py allegro-emt-metals nequip-emt-metals

Processes (relaxed end states, then NEB; EMT and every model run the same protocol):

- ``Au hop on Al(100)``: the ASE tutorial system of ``examples/neb_au_on_al100.py`` (2x2x3 slab,
  3 images). ``tools/make_emt_hop_frames.py`` puts hops of this pair on a 3x3x4 slab into the
  training data of allegro-emt-metals v2, so for v2 this is an in-distribution check.
- ``Cu hop on Cu(110)``, in the [1-10] channel: no (110) surface is in any training set, so this
  one tests transfer.
- ``vacancy hop in Cu / Au``: a nearest neighbour jumps into a vacancy of a 108-site cubic cell
  (climbing image, 5 images). The training data hold vacancies (31-atom cells, MD up to 1500 K)
  but no jumps, so these test transfer to the transition state.

Prints a Markdown table of barriers (eV) and model - EMT differences (meV).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
from ase.build import add_adsorbate, bulk, fcc110
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tools"))
from make_emt_dataset import emt_lattice_constant  # noqa: E402
from neb_au_on_al100 import endpoints, neb_barrier  # noqa: E402

from allegro_ase import AllegroCalculator  # noqa: E402


def channel_hop(element: str = "Cu") -> tuple:
    """Adatom in the hollow of fcc(110) and the next hollow along the [1-10] channel (ASE's y)."""
    slab = fcc110(element, size=(3, 4, 4), a=emt_lattice_constant(element), vacuum=6.0)
    add_adsorbate(slab, element, 1.3, "hollow")
    slab.set_constraint(FixAtoms(mask=[atom.tag > 2 for atom in slab]))  # bottom two layers
    final = slab.copy()
    final[-1].y += slab.cell[1, 1] / 4
    return slab, final


def vacancy_hop(element: str) -> tuple:
    """108-site fcc cell without the atom at the origin, and its neighbour moved into it."""
    initial = bulk(element, "fcc", a=emt_lattice_constant(element), cubic=True) * 3
    del initial[0]
    neighbour = int(np.argmin(np.linalg.norm(initial.positions, axis=1)))  # at a/√2 from 0
    final = initial.copy()
    final.positions[neighbour] = 0.0
    return initial, final


PROCESSES = {
    "Au hop on Al(100)": (endpoints, {}),
    "Cu hop on Cu(110)": (channel_hop, {"n_images": 5, "climb": True}),
    "vacancy hop in Cu": (lambda: vacancy_hop("Cu"), {"n_images": 5, "climb": True}),
    "vacancy hop in Au": (lambda: vacancy_hop("Au"), {"n_images": 5, "climb": True}),
}


def barriers(make_calc) -> dict[str, float]:
    """Barrier (eV) of every process with calculators from ``make_calc()``."""
    return {
        name: neb_barrier(*make_endpoints(), make_calc, **options)
        for name, (make_endpoints, options) in PROCESSES.items()
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="zoo model names")
    args = parser.parse_args(argv)
    results = {"EMT": barriers(EMT)}
    for name in args.models:
        shared = AllegroCalculator.from_pretrained(name, device="cpu")
        results[name] = barriers(lambda shared=shared: copy.copy(shared))
    print("| process | EMT (eV) | " + " | ".join(f"{m} (eV) | Δ (meV)" for m in args.models) + " |")
    print("|---|---|" + "---|---|" * len(args.models))
    for process, reference in results["EMT"].items():
        cells = [
            f"{results[m][process]:.3f} | {1000 * (results[m][process] - reference):+.0f}"
            for m in args.models
        ]
        print(f"| {process} | {reference:.3f} | " + " | ".join(cells) + " |")
    return results


if __name__ == "__main__":
    main()
