#!/usr/bin/env python
"""GFN2-xTB aspirin frames from other conformers: a transfer test set (HDF5, ``allegro-ase-dataset/1``).

The held-out frames of ``allegro-gfn2-aspirin`` come from the same MD trajectories as its training
frames (10 fs apart), so their errors say nothing about configurations the model never saw. This
script samples an independent set from two other conformers of the GFN2-relaxed aspirin of
``tools/make_xtb_dataset.py`` (the training set's starting point), each made by turning one group
by 180° and relaxing again with GFN2:

``carboxyl``
    the carboxyl group about the ring-carboxyl C-C bond (dihedral of atoms 1-0-6-7, 0-based in
    ``make_xtb_dataset.ASPIRIN``): C=O and O-H swap sides. The training MD reaches this
    orientation only at its highest temperatures (750 and 1000 K).
``ester``
    the acetyl group about the ester O-C(=O) bond (dihedral 1-10-11-12): from the E ester the
    training set was sampled around (C=O trans to the ring carbon) to the Z ester (C=O cis),
    about 0.29 eV *lower* in GFN2, which the training MD barely visits (at 1000 K only).

``original``
    the relaxed E-ester aspirin itself, the training set's starting point (not sampled by
    default).

From each relaxed conformer, Langevin MD at 400 and 700 K by default (the training set used 300,
500, 750 and 1000 K). MD settings, bond-graph rejection and task seeds are those of
``make_xtb_dataset.py`` (dt 0.5 fs, friction 0.01 fs⁻¹, 200 equilibration steps, a frame every
20 steps). One task, ``{conformer}_md_{T}K_chunk{c:02d}``, per (conformer, temperature, chunk of
``--chunk`` frames): one trajectory, restarted from the relaxed conformer with its own seed; an
interrupted run resumes by re-running the command. ``config_type``:
``aspirin_{conformer}_md_{T}K``; each frame also stores its task (the trajectory it belongs to),
which ``split: {by: task}`` of the trainer keeps within one split.

Usage (one thread: bitwise reproducible). The transfer test set of ``allegro-gfn2-aspirin``::

    OMP_NUM_THREADS=1 python tools/make_xtb_transfer_frames.py \
        --out tests/data/heldout/allegro-gfn2-aspirin-transfer.h5 --seed 0

The three-conformer training set of its v2 (seed 1, other temperatures: no task and no frame
shared with the transfer set)::

    OMP_NUM_THREADS=1 python tools/make_xtb_transfer_frames.py \
        --out data/gfn2_aspirin_conformers.h5 --seed 1 --conformers original carboxyl ester \
        --temperatures 300 500 750 --frames 3000 --chunk 67
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

import ase
import h5py
import numpy as np
from ase import Atoms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_xtb_dataset import (  # noqa: E402
    ACCURACY,
    DT_FS,
    EQUIL_STEPS,
    MAX_BAD_IN_A_ROW,
    SAMPLE_EVERY,
    bond_graph,
    relax,
    run_chunk,
    start_geometry,
    task_seed,
)

from allegro_ase.datasets import FrameWriter  # noqa: E402

TEMPERATURES = (400, 700)
ORIGINAL = "original"
# name: (dihedral (0-based indices in make_xtb_dataset.ASPIRIN), atoms turned about its middle bond)
CONFORMERS = {
    "carboxyl": ((1, 0, 6, 7), (7, 8, 9)),
    "ester": ((1, 10, 11, 12), (12, 13, 14, 15, 16)),
}


def dihedral(positions: np.ndarray, indices: tuple[int, ...]) -> float:
    """Dihedral angle (degrees, -180..180) of four atoms of ``positions``."""
    atoms = Atoms("C" * len(positions), positions=positions)
    return (atoms.get_dihedral(*indices) + 180.0) % 360.0 - 180.0


def turned_conformer(relaxed: Atoms, conformer: str) -> Atoms:
    """``relaxed`` with one group (``CONFORMERS``) turned by 180°, relaxed again with GFN2."""
    indices, group = CONFORMERS[conformer]
    atoms = relaxed.copy()
    mask = np.zeros(len(atoms), dtype=bool)
    mask[list(group)] = True
    atoms.set_dihedral(*indices, atoms.get_dihedral(*indices) + 180.0, mask=mask)
    return relax(atoms)


def tasks_for(
    frames_per_run: int,
    chunk: int,
    conformers: tuple[str, ...] = tuple(CONFORMERS),
    temperatures: tuple[int, ...] = TEMPERATURES,
) -> list[tuple[str, str, int, int]]:
    """Ordered (task, conformer, temperature, frames), chunks of at most ``chunk`` frames."""
    n_chunks = max(1, int(np.ceil(frames_per_run / chunk)))
    sizes = [len(a) for a in np.array_split(np.arange(frames_per_run), n_chunks)]
    return [
        (f"{conformer}_md_{t}K_chunk{c:02d}", conformer, t, size)
        for conformer in conformers
        for t in temperatures
        for c, size in enumerate(sizes)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="tests/data/heldout/allegro-gfn2-aspirin-transfer.h5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--frames", type=int, default=192, help="total, split over conformers and temperatures"
    )
    parser.add_argument("--chunk", type=int, default=48, help="frames per task (trajectory)")
    parser.add_argument(
        "--conformers",
        nargs="+",
        choices=(ORIGINAL, *CONFORMERS),
        default=list(CONFORMERS),
        help=f"conformers to sample; {ORIGINAL!r} is the relaxed training-set aspirin",
    )
    parser.add_argument("--temperatures", nargs="+", type=int, default=list(TEMPERATURES))
    args = parser.parse_args(argv)
    conformers = tuple(dict.fromkeys(args.conformers))
    temperatures = tuple(dict.fromkeys(args.temperatures))

    t_start = time.perf_counter()
    original = relax(start_geometry("aspirin"))
    graph = bond_graph(original)
    starts, described = {ORIGINAL: original}, {}
    for conformer in conformers:
        if conformer == ORIGINAL:
            described[conformer] = {
                "energy_eV": float(original.get_potential_energy()),
                "energy_above_original_eV": 0.0,
                "positions_A": original.positions.round(6).tolist(),
            }
            continue
        indices, _ = CONFORMERS[conformer]
        atoms = turned_conformer(original, conformer)
        if not np.array_equal(bond_graph(atoms), graph):
            sys.exit(
                f"the {conformer} conformer's bond graph differs from aspirin's; not sampling it"
            )
        starts[conformer] = atoms
        described[conformer] = {
            "dihedral_atoms_0based": list(indices),
            "dihedral_deg_original": dihedral(original.positions, indices),
            "dihedral_deg_turned": dihedral(atoms.positions, indices),
            "energy_eV": float(atoms.get_potential_energy()),
            "energy_above_original_eV": float(
                atoms.get_potential_energy() - original.get_potential_energy()
            ),
            "positions_A": atoms.positions.round(6).tolist(),
        }
        print(
            f"{conformer}: dihedral {described[conformer]['dihedral_deg_original']:.0f} -> "
            f"{described[conformer]['dihedral_deg_turned']:.0f} deg, "
            f"{1000 * described[conformer]['energy_above_original_eV']:+.1f} meV",
            flush=True,
        )
    metadata = {
        "script": "tools/make_xtb_transfer_frames.py",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "molecule": "aspirin",
        "purpose": "transfer test set: other conformers, other temperatures than the training set"
        if ORIGINAL not in conformers
        else "MD from several conformers, one task (trajectory) per chunk, labelled per frame",
        "seed": args.seed,
        "reference": "GFN2-xTB via tblite.ase.TBLite (Bannwarth, Ebert & Grimme 2019)",
        "tblite_version": version("tblite"),
        "ase_version": ase.__version__,
        "numpy_version": np.__version__,
        "h5py_version": h5py.__version__,
        "python_version": platform.python_version(),
        "tblite_settings": {"method": "GFN2-xTB", "accuracy": ACCURACY, "verbosity": 0},
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "original_energy_eV": float(original.get_potential_energy()),
        "conformers": described,
        "conformer_recipe": "one group turned by 180 deg about the dihedral's middle bond, "
        "then relaxed with GFN2 (BFGS fmax 0.05 eV/A)",
        "md": {
            "thermostat": "Langevin",
            "dt_fs": DT_FS,
            "friction_per_fs": 0.01,
            "equilibration_steps": EQUIL_STEPS,
            "sample_every_steps": SAMPLE_EVERY,
            "temperatures_K": list(temperatures),
            "frames_per_chunk": args.chunk,
            "restart_after_bad_in_a_row": MAX_BAD_IN_A_ROW,
        },
        "reject": "covalent bond graph (natural_cutoffs x 1.2) differs from the relaxed molecule",
        "task_seed": "int.from_bytes(sha256(f'{seed}:{task}')[:8], 'little') >> 1",
    }
    runs = len(conformers) * len(temperatures)
    tasks = tasks_for(args.frames // runs, args.chunk, conformers, temperatures)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FrameWriter(out, method="GFN2-xTB", metadata=metadata) as writer:
        todo = [task for task in tasks if task[0] not in writer.completed_tasks]
        print(f"{len(tasks)} tasks, {len(tasks) - len(todo)} already done", flush=True)
        for k, (name, conformer, temperature, n_frames) in enumerate(todo):
            t0 = time.perf_counter()
            frames, rejected = run_chunk(
                starts[conformer],
                graph,
                temperature,
                n_frames,
                task_seed(args.seed, name),
                f"aspirin_{conformer}_md_{temperature}K",
            )
            writer.append(frames, task=name)
            back = ""
            if conformer != ORIGINAL:
                indices = CONFORMERS[conformer][0]
                original_side = dihedral(original.positions, indices)
                n_back = sum(
                    abs((dihedral(f.positions, indices) - original_side + 180.0) % 360.0 - 180.0)
                    < 90.0
                    for f in frames
                )
                back = f"{n_back} back within 90 deg of the original dihedral, "
            print(
                f"[{k + 1}/{len(todo)}] {name}: {len(frames)} frames, {rejected} rejected, "
                f"{back}{time.perf_counter() - t0:.1f} s",
                flush=True,
            )
        n = len(writer)
    print(f"done: {n} frames in {out}, {time.perf_counter() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
