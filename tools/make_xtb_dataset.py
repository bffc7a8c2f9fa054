#!/usr/bin/env python
"""Generate GFN2-xTB molecular-dynamics training sets for ethanol or aspirin (HDF5, ``allegro-ase-dataset/1``).

Reference: GFN2-xTB through ``tblite.ase.TBLite(method="GFN2-xTB")`` (Bannwarth, Ebert & Grimme,
J. Chem. Theory Comput. 15, 1652 (2019)).

The molecule is first relaxed with GFN2 (BFGS, fmax 0.05 eV/Å). Langevin MD then runs at each
temperature (dt 0.5 fs); frames are taken every 20 steps after 200 equilibration steps. The work is
cut into tasks of about 100 frames per (temperature, chunk); each chunk restarts from the relaxed
geometry with its own seed (derived from the task name and ``--seed``) and its own equilibration,
so an interrupted run resumes at the next unfinished chunk. Frames whose covalent bond graph
(``natural_cutoffs`` × 1.2) differs from the relaxed molecule's are rejected. Stored: energy and
forces, pbc False, zero cell, no stress.

Usage (run with one thread, which makes tblite bitwise reproducible)::

    OMP_NUM_THREADS=1 python tools/make_xtb_dataset.py aspirin --seed 0
    OMP_NUM_THREADS=1 python tools/make_xtb_dataset.py ethanol --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

import ase
import h5py
import numpy as np
from ase import Atoms, units
from ase.build import molecule
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from ase.neighborlist import NeighborList, natural_cutoffs
from ase.optimize import BFGS
from tblite.ase import TBLite

from allegro_ase.datasets import Frame, FrameWriter

TEMPERATURES = (300, 500, 750, 1000)
DT_FS = 0.5
EQUIL_STEPS = 200
SAMPLE_EVERY = 20
FRICTION = 0.01 / units.fs
CHUNK = 100
# tblite SCF accuracy. The default (1.0) leaves ~1e-4 eV/Å of force noise that depends on the SCF
# starting guess (the previous MD step's wavefunction), so stored forces would not be reproduced by a
# fresh calculation to float32 precision; 0.01 brings that below 1e-6 eV/Å at no measurable cost.
ACCURACY = 0.01
MAX_BAD_IN_A_ROW = 5  # restart the chunk's trajectory from the relaxed geometry after this many

# Aspirin (acetylsalicylic acid, C9H8O4): a hand-built starting geometry (benzene ring in the xy
# plane, carboxylic acid on C1 in plane, acetoxy group on C2 twisted out of plane). It is relaxed
# with GFN2 before use, so only the connectivity and rough shape matter.
ASPIRIN = (
    ("C", 1.390, 0.000, 0.000),
    ("C", 0.695, 1.204, 0.000),
    ("C", -0.695, 1.204, 0.000),
    ("C", -1.390, 0.000, 0.000),
    ("C", -0.695, -1.204, 0.000),
    ("C", 0.695, -1.204, 0.000),
    ("C", 2.870, 0.000, 0.000),  # carboxyl C
    ("O", 3.480, 1.057, 0.000),  # carboxyl C=O
    ("O", 3.540, -1.160, 0.000),  # carboxyl O-H
    ("H", 4.510, -1.160, 0.000),
    ("O", 1.390, 2.408, 0.000),  # ester O
    ("C", 1.045, 3.005, 1.172),  # acetyl C
    ("O", 0.445, 4.044, 1.162),  # acetyl C=O
    ("C", 1.415, 2.364, 2.477),  # methyl C
    ("H", 1.505, 3.131, 3.246),
    ("H", 0.642, 1.651, 2.764),
    ("H", 2.367, 1.844, 2.371),
    ("H", -1.235, 2.139, 0.000),
    ("H", -2.470, 0.000, 0.000),
    ("H", -1.235, -2.139, 0.000),
    ("H", 1.235, -2.139, 0.000),
)


def task_seed(global_seed: int, task: str) -> int:
    """A 63-bit seed from the global seed and the task name (stable across runs and platforms)."""
    digest = hashlib.sha256(f"{global_seed}:{task}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def start_geometry(name: str) -> Atoms:
    if name == "ethanol":
        return molecule("CH3CH2OH")
    if name == "aspirin":
        return Atoms([s for s, *_ in ASPIRIN], positions=[xyz for _, *xyz in ASPIRIN])
    raise ValueError(f"unknown molecule {name!r}")


def calculator() -> TBLite:
    return TBLite(method="GFN2-xTB", accuracy=ACCURACY, verbosity=0)


def bond_graph(atoms: Atoms) -> np.ndarray:
    cutoffs = [1.2 * c for c in natural_cutoffs(atoms)]
    nl = NeighborList(cutoffs, skin=0.0, self_interaction=False, bothways=True)
    nl.update(atoms)
    return nl.get_connectivity_matrix(sparse=False).astype(bool)


def relax(atoms: Atoms) -> Atoms:
    atoms = atoms.copy()
    atoms.set_cell(np.zeros((3, 3)))
    atoms.pbc = False
    atoms.calc = calculator()
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=1000)
    return atoms


def tasks_for(frames_per_temperature: int):
    """Ordered (task name, temperature, number of frames) with chunks of about CHUNK frames."""
    n_chunks = max(1, int(np.ceil(frames_per_temperature / CHUNK)))
    sizes = [len(a) for a in np.array_split(np.arange(frames_per_temperature), n_chunks)]
    return [
        (f"md_{t}K_chunk{c:02d}", t, size) for t in TEMPERATURES for c, size in enumerate(sizes)
    ]


def run_chunk(
    relaxed: Atoms, graph: np.ndarray, temperature: int, n_frames: int, seed: int, config_type: str
):
    """Frames of one chunk, and the number of rejected (bond graph changed) samples."""
    rng = np.random.default_rng(seed)
    frames, rejected, bad_in_a_row = [], 0, 0

    def start():
        atoms = relaxed.copy()
        atoms.calc = calculator()
        thermalize_momenta(atoms, temperature, rng=rng)
        dyn = Langevin(
            atoms,
            DT_FS * units.fs,
            temperature_K=temperature,
            friction=FRICTION,
            fixcm=False,
            rng=rng,
        )
        dyn.run(EQUIL_STEPS)
        return atoms, dyn

    atoms, dyn = start()
    while len(frames) < n_frames:
        dyn.run(SAMPLE_EVERY)
        if not np.array_equal(bond_graph(atoms), graph):
            rejected += 1
            bad_in_a_row += 1
            if rejected > 3 * n_frames:
                raise RuntimeError(f"{config_type}: too many rejected frames ({rejected})")
            if bad_in_a_row >= MAX_BAD_IN_A_ROW:
                atoms, dyn = start()
                bad_in_a_row = 0
            continue
        bad_in_a_row = 0
        frames.append(
            Frame(
                numbers=atoms.numbers.copy(),
                positions=atoms.positions.copy(),
                cell=np.zeros((3, 3)),
                pbc=np.zeros(3, dtype=bool),
                energy=float(atoms.get_potential_energy()),
                forces=np.array(atoms.get_forces(apply_constraint=False)),
                stress=None,
                config_type=config_type,
            )
        )
    return frames, rejected


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("molecule", choices=["ethanol", "aspirin"])
    parser.add_argument("--out", default=None, help="default: data/gfn2_{molecule}.h5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--frames", type=int, default=2500, help="total, split evenly over temperatures"
    )
    parser.add_argument(
        "--max-tasks", type=int, default=None, help="stop after this many tasks (testing)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out or f"data/gfn2_{args.molecule}.h5")

    t_start = time.perf_counter()
    relaxed = relax(start_geometry(args.molecule))
    graph = bond_graph(relaxed)
    tasks = tasks_for(args.frames // len(TEMPERATURES))
    metadata = {
        "script": "tools/make_xtb_dataset.py",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "molecule": args.molecule,
        "seed": args.seed,
        "reference": "GFN2-xTB via tblite.ase.TBLite (Bannwarth, Ebert & Grimme 2019)",
        "tblite_version": version("tblite"),
        "ase_version": ase.__version__,
        "numpy_version": np.__version__,
        "h5py_version": h5py.__version__,
        "python_version": platform.python_version(),
        "tblite_settings": {"method": "GFN2-xTB", "accuracy": ACCURACY, "verbosity": 0},
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "relaxed": {
            "energy_eV": float(relaxed.get_potential_energy()),
            "symbols": relaxed.get_chemical_symbols(),
            "positions_A": relaxed.positions.round(6).tolist(),
            "optimizer": "BFGS fmax 0.05 eV/A",
        },
        "md": {
            "thermostat": "Langevin",
            "dt_fs": DT_FS,
            "friction_per_fs": 0.01,
            "equilibration_steps": EQUIL_STEPS,
            "sample_every_steps": SAMPLE_EVERY,
            "temperatures_K": list(TEMPERATURES),
            "frames_per_chunk": CHUNK,
            "restart_after_bad_in_a_row": MAX_BAD_IN_A_ROW,
        },
        "reject": "covalent bond graph (natural_cutoffs x 1.2) differs from the relaxed molecule",
        "task_seed": "int.from_bytes(sha256(f'{seed}:{task}')[:8], 'little') >> 1",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    total_rejected = 0
    with FrameWriter(out, method="GFN2-xTB", metadata=metadata) as writer:
        done = writer.completed_tasks
        todo = [t for t in tasks if t[0] not in done]
        skipped = len(tasks) - len(todo)
        if args.max_tasks is not None:
            todo = todo[: args.max_tasks]
        print(
            f"{args.molecule}: relaxed E = {relaxed.get_potential_energy():.6f} eV; {len(tasks)} tasks, "
            f"{skipped} already done, {len(writer)} frames in file",
            flush=True,
        )
        for k, (name, temperature, n_frames) in enumerate(todo):
            t0 = time.perf_counter()
            frames, rejected = run_chunk(
                relaxed,
                graph,
                temperature,
                n_frames,
                task_seed(args.seed, name),
                f"{args.molecule}_md_{temperature}K",
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
        f"done: {n} frames, {total_rejected} rejected this run, {time.perf_counter() - t_start:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
