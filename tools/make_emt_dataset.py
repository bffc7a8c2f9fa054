#!/usr/bin/env python
"""Generate the EMT metals training set (Al, Cu, Ag, Au) as an ``allegro-ase-dataset/1`` HDF5 file.

Reference: ASE ``EMT`` (Jacobsen, Stoltze & Nørskov, Surf. Sci. 366, 394 (1996)).

Families (each sampled by Langevin MD at 300/600/900/1200/1500 K plus 0 K random displacements):

* ``bulk``     strained 32-atom fcc cells (2x2x2 cubic), ±4 % isotropic and ±2 % shear strain
* ``vacancy``  the same cell with one atom removed
* ``alloy``    random binary alloys for every pair, x_B = 0.25/0.5/0.75, Vegard lattice constant
* ``slab``     (100) and (111) 3x3x4 slabs, 6 Å vacuum each side, pbc (T, T, F)
* ``adatom``   every element in the hollow site of every (100) and (111) slab (includes Au@Al100)
* ``cluster``  13-atom icosahedra and cuboctahedra, pbc False

Every (family, system, temperature) is one task with its own seed, derived from the task name and
``--seed``; tasks already in the file are skipped, so an interrupted run resumes where it stopped.
Stress is stored only for frames periodic in all three directions. Forces are the raw calculator
forces (no constraints are used). Frames with any atomic |F| > ``--fmax-reject`` are dropped.

Usage::

    OMP_NUM_THREADS=1 python tools/make_emt_dataset.py --out data/emt_metals.h5 --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import platform
import re
import sys
import time
from pathlib import Path

import ase
import h5py
import numpy as np
from ase import Atoms, units
from ase.build import add_adsorbate, bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron, Octahedron
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta

from allegro_ase.datasets import Frame, FrameWriter

ELEMENTS = ("Al", "Cu", "Ag", "Au")
TEMPERATURES = (300, 600, 900, 1200, 1500)
FRICTION = 0.02 / units.fs  # Langevin friction, 1/time
SAMPLE_FS = 20.0  # time between stored frames (10 steps of 2 fs)
EQUIL_FS = 100.0  # equilibration before the first stored frame of each MD run

# frames per MD run, MD runs per task (each run gets a new random strain / arrangement), 0 K frames
PLAN = {
    "bulk": {"frames": 10, "runs": 3, "zero_k": 6},
    "vacancy": {"frames": 8, "runs": 1, "zero_k": 3},
    "alloy": {"frames": 10, "runs": 3, "zero_k": 6},  # one run per composition
    "slab": {"frames": 10, "runs": 1, "zero_k": 3},
    "adatom": {"frames": 5, "runs": 1, "zero_k": 2},
    "cluster": {"frames": 4, "runs": 1, "zero_k": 2},
}
ALLOY_FRACTIONS = (0.25, 0.5, 0.75)


def task_seed(global_seed: int, task: str) -> int:
    """A 63-bit seed from the global seed and the task name (stable across runs and platforms)."""
    digest = hashlib.sha256(f"{global_seed}:{task}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def emt_lattice_constant(element: str) -> float:
    """EMT equilibrium fcc lattice constant (Å), from a parabola through 7 energies of a 1-atom cell."""
    a_ref = bulk(element, "fcc").cell.cellpar()[0] * np.sqrt(2.0)
    scales = np.linspace(0.97, 1.03, 7)
    energies = []
    for s in scales:
        atoms = bulk(element, "fcc", a=a_ref * s)
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy())
    c2, c1, _ = np.polyfit(scales, energies, 2)
    return float(a_ref * (-c1 / (2.0 * c2)))


def strain_cell(atoms: Atoms, rng: np.random.Generator, iso: float, shear: float) -> None:
    """Apply a random isotropic (±iso) and symmetric shear (±shear) strain, moving atoms with it."""
    eps = np.eye(3) * (1.0 + rng.uniform(-iso, iso))
    off = rng.uniform(-shear, shear, size=3)
    eps[0, 1] = eps[1, 0] = off[0]
    eps[0, 2] = eps[2, 0] = off[1]
    eps[1, 2] = eps[2, 1] = off[2]
    atoms.set_cell(atoms.cell.array @ eps, scale_atoms=True)


# ----------------------------------------------------------------------------- systems
def make_bulk(el, a0, rng):
    atoms = bulk(el, "fcc", a=a0, cubic=True).repeat((2, 2, 2))
    strain_cell(atoms, rng, 0.04, 0.02)
    return atoms


def make_vacancy(el, a0, rng):
    atoms = bulk(el, "fcc", a=a0, cubic=True).repeat((2, 2, 2))
    del atoms[int(rng.integers(len(atoms)))]
    strain_cell(atoms, rng, 0.01, 0.0)
    return atoms


def make_alloy(pair, a0s, fraction, rng):
    el_a, el_b = pair
    a = (1.0 - fraction) * a0s[el_a] + fraction * a0s[el_b]  # Vegard's law
    atoms = bulk(el_a, "fcc", a=a, cubic=True).repeat((2, 2, 2))
    n_b = int(round(fraction * len(atoms)))
    symbols = np.array([el_a] * len(atoms), dtype=object)
    symbols[rng.permutation(len(atoms))[:n_b]] = el_b
    atoms.set_chemical_symbols(list(symbols))
    strain_cell(atoms, rng, 0.02, 0.01)
    return atoms


def make_slab(el, facet, a0):
    build = fcc100 if facet == "100" else fcc111
    slab = build(el, size=(3, 3, 4), a=a0, vacuum=6.0)
    slab.pbc = (True, True, False)
    return slab


def make_adatom(ad, el, facet, a0):
    slab = make_slab(el, facet, a0)
    site, height = ("hollow", 1.7) if facet == "100" else ("fcc", 2.0)
    add_adsorbate(slab, ad, height, position=site)
    slab.center(vacuum=6.0, axis=2)
    slab.pbc = (True, True, False)
    return slab


def make_cluster(el, shape, a0):
    atoms = (
        Icosahedron(el, 2, latticeconstant=a0)
        if shape == "ico"
        else Octahedron(el, 3, cutoff=1, latticeconstant=a0)
    )
    atoms.set_cell(np.zeros((3, 3)))
    atoms.pbc = False
    atoms.center()
    return atoms


# ----------------------------------------------------------------------------- tasks
def build_tasks(a0s):
    """Ordered list of (task name, family, factory(rng, run index) -> Atoms, temperature)."""
    systems = []  # (family, label, factory)
    for el in ELEMENTS:
        systems.append(("bulk", el, lambda rng, i, el=el: make_bulk(el, a0s[el], rng)))
    for pair in itertools.combinations(ELEMENTS, 2):
        systems.append(
            (
                "alloy",
                "".join(pair),
                lambda rng, i, pair=pair: make_alloy(
                    pair, a0s, ALLOY_FRACTIONS[i % len(ALLOY_FRACTIONS)], rng
                ),
            )
        )
    for el in ELEMENTS:
        for facet in ("100", "111"):
            systems.append(
                ("slab", f"{el}{facet}", lambda rng, i, el=el, f=facet: make_slab(el, f, a0s[el]))
            )
    for el in ELEMENTS:
        for facet in ("100", "111"):
            for ad in ELEMENTS:
                systems.append(
                    (
                        "adatom",
                        f"{ad}@{el}{facet}",
                        lambda rng, i, ad=ad, el=el, f=facet: make_adatom(ad, el, f, a0s[el]),
                    )
                )
    for el in ELEMENTS:
        systems.append(("vacancy", el, lambda rng, i, el=el: make_vacancy(el, a0s[el], rng)))
    for el in ELEMENTS:
        for shape in ("ico", "cubo"):
            systems.append(
                (
                    "cluster",
                    f"{el}13{shape}",
                    lambda rng, i, el=el, s=shape: make_cluster(el, s, a0s[el]),
                )
            )
    tasks = []
    for temperature in (0, *TEMPERATURES):
        for family, label, factory in systems:
            tasks.append((f"{family}_{label}_{temperature}K", family, factory, temperature))
    return tasks


def label(atoms: Atoms, config_type: str) -> Frame:
    """Evaluate EMT (raw forces, stress only when periodic in 3D) and pack a Frame."""
    periodic = bool(np.all(atoms.pbc))
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces(apply_constraint=False)
    stress = atoms.get_stress(voigt=False, apply_constraint=False) if periodic else None
    return Frame(
        numbers=atoms.numbers.copy(),
        positions=atoms.positions.copy(),
        cell=atoms.cell.array.copy() if np.any(atoms.pbc) else np.zeros((3, 3)),
        pbc=atoms.pbc.copy(),
        energy=float(energy),
        forces=np.array(forces),
        stress=None if stress is None else np.array(stress),
        config_type=config_type,
    )


def run_task(name, family, factory, temperature, seed, fmax_reject):
    """Frames of one task and the number rejected for large forces."""
    rng = np.random.default_rng(seed)
    plan = PLAN[family]
    frames, rejected = [], 0

    def keep(atoms):
        nonlocal rejected
        frame = label(atoms, name)
        if np.max(np.linalg.norm(frame.forces, axis=1)) > fmax_reject:
            rejected += 1
        else:
            frames.append(frame)

    if temperature == 0:
        for i in range(plan["zero_k"]):
            atoms = factory(rng, i)
            atoms.positions += rng.normal(0.0, rng.uniform(0.01, 0.08), size=atoms.positions.shape)
            atoms.calc = EMT()
            keep(atoms)
        return frames, rejected

    for i in range(plan["runs"]):
        atoms = factory(rng, i)
        atoms.positions += rng.normal(0.0, 0.03, size=atoms.positions.shape)
        atoms.calc = EMT()
        light = "Al" in atoms.get_chemical_symbols()
        dt = 1.0 if light else 2.0  # fs; Al is light, use a smaller step
        every = int(round(SAMPLE_FS / dt))
        thermalize_momenta(atoms, temperature, rng=rng)
        dyn = Langevin(
            atoms, dt * units.fs, temperature_K=temperature, friction=FRICTION, fixcm=False, rng=rng
        )
        dyn.run(int(round(EQUIL_FS / dt)))
        for _ in range(plan["frames"]):
            dyn.run(every)
            keep(atoms)
    return frames, rejected


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/emt_metals.h5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, help="regex: run only tasks whose name matches")
    parser.add_argument("--fmax-reject", type=float, default=20.0)
    args = parser.parse_args(argv)

    a0s = {el: emt_lattice_constant(el) for el in ELEMENTS}
    tasks = build_tasks(a0s)
    if args.only:
        tasks = [t for t in tasks if re.search(args.only, t[0])]
    metadata = {
        "script": "tools/make_emt_dataset.py",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seed": args.seed,
        "only": args.only,
        "reference": "ASE EMT (Jacobsen, Stoltze & Norskov 1996)",
        "ase_version": ase.__version__,
        "numpy_version": np.__version__,
        "h5py_version": h5py.__version__,
        "python_version": platform.python_version(),
        "emt_lattice_constants": a0s,
        "temperatures_K": list(TEMPERATURES),
        "plan": PLAN,
        "alloy_fractions": list(ALLOY_FRACTIONS),
        "md": {
            "thermostat": "Langevin",
            "friction_per_fs": 0.02,
            "dt_fs": "2 (1 if Al present)",
            "sample_every_fs": SAMPLE_FS,
            "equilibration_fs": EQUIL_FS,
        },
        "fmax_reject_eV_per_A": args.fmax_reject,
        "task_seed": "int.from_bytes(sha256(f'{seed}:{task}')[:8], 'little') >> 1",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    total_rejected = 0
    with FrameWriter(args.out, method="EMT", metadata=metadata) as writer:
        done = writer.completed_tasks
        todo = [t for t in tasks if t[0] not in done]
        print(
            f"{len(tasks)} tasks, {len(tasks) - len(todo)} already done, {len(writer)} frames in file; "
            f"a0 = {json.dumps({k: round(v, 4) for k, v in a0s.items()})}",
            flush=True,
        )
        for k, (name, family, factory, temperature) in enumerate(todo):
            t0 = time.perf_counter()
            frames, rejected = run_task(
                name, family, factory, temperature, task_seed(args.seed, name), args.fmax_reject
            )
            writer.append(frames, task=name)
            total_rejected += rejected
            print(
                f"[{k + 1}/{len(todo)}] {name}: {len(frames)} frames, {rejected} rejected, "
                f"{time.perf_counter() - t0:.1f} s (file: {len(writer)} frames)",
                flush=True,
            )
        n = len(writer)
    print(
        f"done: {n} frames, {total_rejected} rejected this run, {time.perf_counter() - start:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
