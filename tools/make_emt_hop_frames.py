#!/usr/bin/env python
"""Adatom hop paths with EMT: the transition-state frames missing from ``emt_metals.h5``.

For every adatom (Al, Cu, Ag, Au) on every (100) and (111) slab of the same elements, the hop
between neighbouring hollow sites (100: hollow to hollow; 111: fcc to hcp) is found by NEB with
EMT (bottom two layers fixed while relaxing, 5 interior images). Each image is stored, plus
``--rattles`` copies with Gaussian displacements of random width 0.02–0.10 Å. Forces are EMT's
raw forces (the constraints only steer the relaxation). One task per (adatom, slab, facet),
seeded from its name; an interrupted run resumes.

allegro-emt-metals v1 underestimated the Au-on-Al(100) hop barrier by 92 meV because such
frames were missing; version 2 is trained with them (see its card)::

    OMP_NUM_THREADS=1 python tools/make_emt_hop_frames.py --out data/emt_hops.h5 --seed 0
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time
from pathlib import Path

import ase
import numpy as np
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.mep import NEB
from ase.optimize import BFGS

sys.path.insert(0, str(Path(__file__).parent))
from make_emt_dataset import ELEMENTS, emt_lattice_constant, label, make_adatom, task_seed  # noqa: E402

from allegro_ase.datasets import FrameWriter  # noqa: E402

INTERIOR_IMAGES = 5


def hop_endpoints(ad: str, el: str, facet: str, a0: float):
    """Initial and final states of one hop, bottom two layers fixed, relaxed with EMT."""
    initial = make_adatom(ad, el, facet, a0)
    final = make_adatom(ad, el, facet, a0)
    if facet == "100":
        final.positions[-1, 0] += a0 / np.sqrt(2)  # next hollow site along x
    else:
        d = a0 / np.sqrt(2)  # surface nearest-neighbour distance; fcc -> hcp hollow
        final.positions[-1, :2] += [d / 2, d / (2 * np.sqrt(3))]
    for atoms in (initial, final):
        atoms.set_constraint(FixAtoms(mask=[atom.tag > 2 for atom in atoms]))
        atoms.calc = EMT()
        BFGS(atoms, logfile=None).run(fmax=0.05, steps=200)
    return initial, final


def hop_path(ad: str, el: str, facet: str, a0: float) -> list:
    """Endpoints and interior images of the EMT minimum-energy path (fmax 0.1 eV/Å)."""
    initial, final = hop_endpoints(ad, el, facet, a0)
    images = [initial] + [initial.copy() for _ in range(INTERIOR_IMAGES)] + [final]
    for image in images[1:-1]:
        image.calc = EMT()
    neb = NEB(images, method="improvedtangent")
    neb.interpolate()
    BFGS(neb, logfile=None).run(fmax=0.1, steps=200)
    return images


def run_task(name: str, ad: str, el: str, facet: str, a0: float, rattles: int, seed: int):
    """Frames of one hop: each image, and ``rattles`` displaced copies of it."""
    rng = np.random.default_rng(seed)
    frames = []
    for image in hop_path(ad, el, facet, a0):
        for k in range(rattles + 1):
            atoms = image.copy()
            atoms.set_constraint()
            if k:
                atoms.positions += rng.normal(0.0, rng.uniform(0.02, 0.10), atoms.positions.shape)
            atoms.calc = EMT()
            frames.append(label(atoms, name))
    return frames


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/emt_hops.h5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rattles", type=int, default=2)
    args = parser.parse_args(argv)
    a0s = {el: emt_lattice_constant(el) for el in ELEMENTS}
    metadata = {
        "script": "tools/make_emt_hop_frames.py",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seed": args.seed,
        "rattles": args.rattles,
        "interior_images": INTERIOR_IMAGES,
        "reference": "ASE EMT (Jacobsen, Stoltze & Norskov 1996)",
        "ase_version": ase.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "emt_lattice_constants": a0s,
    }
    start = time.perf_counter()
    with FrameWriter(args.out, method="EMT", metadata=metadata) as writer:
        combos = list(itertools.product(ELEMENTS, ELEMENTS, ("100", "111")))
        for k, (ad, el, facet) in enumerate(combos):
            name = f"hop_{ad}@{el}{facet}"
            if name in writer.completed_tasks:
                continue
            t0 = time.perf_counter()
            frames = run_task(
                name, ad, el, facet, a0s[el], args.rattles, task_seed(args.seed, name)
            )
            writer.append(frames, task=name)
            print(
                f"[{k + 1}/{len(combos)}] {name}: {len(frames)} frames, "
                f"{time.perf_counter() - t0:.1f} s (file: {len(writer)} frames)",
                flush=True,
            )
        n = len(writer)
    print(f"done: {n} frames, {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
