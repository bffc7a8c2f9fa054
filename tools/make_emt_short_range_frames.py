#!/usr/bin/env python
"""Close-contact frames with EMT: what ``emt_metals.h5`` lacks below the thermal distances.

The MD frames of ``make_emt_dataset.py`` never bring two atoms closer than about 2.1 Å, so a
model trained on them alone may attract atoms that are pushed together (issue: the shipped EMT
models gave Au2 at 1.2 Å a lower energy than at 2.5 Å). Three families, one task per system,
each seeded from its name like the other generators (an interrupted run resumes):

``dimer_{AB}``
    An isolated pair (no pbc, zero cell) of each of the 10 element pairs, at distances from
    0.8 Å to the pair's mean fcc nearest-neighbour distance (evenly spaced, each jittered by up
    to a quarter spacing).
``compressed_{El}`` / ``compressed_{AB}``
    A 32-atom fcc cell of each element and each 50/50 alloy (random sites, Vegard lattice
    constant) compressed isotropically from 0.97 of its nearest-neighbour distance down to 1.8 Å,
    then rattled (Gaussian, 0.03 Å).
``pushed_{El}`` / ``pushed_{AB}``
    The same cells with one atom moved along the bond towards a nearest neighbour, from the
    nearest-neighbour distance down to 0.8 Å (other atoms rattled by 0.03 Å); in the alloys
    an A atom is pushed onto a B atom.

Labels: EMT energy and raw forces. **No stress**: a compressed cell's stress is tens of GPa and,
with the stress weight of the zoo's training configs (100), would outweigh everything else.
Frames whose largest force exceeds ``--fmax-reject`` (default 15 eV/Å) or whose energy exceeds
``--emax-reject`` (default 4 eV/atom above the fcc crystals, EMT's zero) are dropped: EMT gives
an Au pair 1,400 eV/Å at 0.8 Å and Au compressed to 1.9 Å nearest neighbours 28 eV/atom,
values a mean-squared loss cannot balance against the meV errors of the thermal frames (a
fine-tuning with caps of 30 eV/Å and 8 eV/atom took the held-out force error of
allegro-emt-metals from 7 to 53 meV/Å in its first epoch); at shorter distances the model's ZBL
term takes over.

    OMP_NUM_THREADS=1 python tools/make_emt_short_range_frames.py --out data/emt_short_range.h5
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import platform
import re
import sys
import time
from pathlib import Path

import ase
import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

sys.path.insert(0, str(Path(__file__).parent))
from make_emt_dataset import ELEMENTS, emt_lattice_constant, label, task_seed  # noqa: E402

from allegro_ase.datasets import FrameWriter  # noqa: E402

DIMER_POINTS = 20
COMPRESSED_POINTS = 10
PUSHED_POINTS = 14
SHORTEST = 0.8  # Å, dimers and pushed atoms
SHORTEST_NN_COMPRESSED = 1.8  # Å
RATTLE = 0.03  # Å


def nn_distance(symbols: tuple[str, ...], a0s: dict[str, float]) -> float:
    """Mean fcc nearest-neighbour distance (Å) of the elements (Vegard for mixtures)."""
    return float(np.mean([a0s[el] for el in symbols])) / np.sqrt(2.0)


def fcc_cell(symbols: tuple[str, ...], a0s: dict[str, float], rng: np.random.Generator) -> Atoms:
    """32-atom cubic fcc cell of one element, or of two at 50/50 on random sites."""
    a = float(np.mean([a0s[el] for el in symbols]))
    atoms = bulk(symbols[0], "fcc", a=a, cubic=True).repeat((2, 2, 2))
    if len(symbols) == 2:
        order = rng.permutation(len(atoms))
        numbers = atoms.numbers.copy()
        numbers[order[: len(atoms) // 2]] = Atoms(symbols[1]).numbers[0]
        atoms.numbers = numbers
    return atoms


def distances(start: float, stop: float, points: int, rng: np.random.Generator) -> np.ndarray:
    """``points`` distances from ``start`` down to ``stop``, each jittered by <= 1/4 spacing."""
    grid = np.linspace(start, stop, points)
    spacing = abs(start - stop) / (points - 1)
    return np.clip(grid + rng.uniform(-0.25, 0.25, points) * spacing, stop, start)


def dimers(symbols, a0s, rng):
    """Isolated pairs from the nearest-neighbour distance down to 0.8 Å."""
    for r in distances(nn_distance(symbols, a0s), SHORTEST, DIMER_POINTS, rng):
        yield Atoms("".join(symbols), positions=[[0.0, 0.0, 0.0], [0.0, 0.0, r]])


def compressed(symbols, a0s, rng):
    """Isotropically compressed fcc cells, nearest neighbours from 0.97 nn down to 1.8 Å."""
    nn = nn_distance(symbols, a0s)
    base = fcc_cell(symbols, a0s, rng)
    for target in distances(0.97 * nn, SHORTEST_NN_COMPRESSED, COMPRESSED_POINTS, rng):
        atoms = base.copy()
        atoms.set_cell(atoms.cell * (target / nn), scale_atoms=True)
        atoms.positions += rng.normal(0.0, RATTLE, atoms.positions.shape)
        yield atoms


def pushed(symbols, a0s, rng):
    """One atom moved along a bond towards its neighbour (an A onto a B in alloys)."""
    nn = nn_distance(symbols, a0s)
    base = fcc_cell(symbols, a0s, rng)
    mover = int(np.flatnonzero(base.numbers == base.numbers[0])[0])
    target_number = Atoms(symbols[-1]).numbers[0]
    vectors = base.get_distances(mover, range(len(base)), mic=True, vector=True)
    lengths = np.linalg.norm(vectors, axis=1)
    neighbours = [
        j
        for j in range(len(base))
        if j != mover and abs(lengths[j] - nn) < 0.1 and base.numbers[j] == target_number
    ]
    partner = neighbours[int(rng.integers(len(neighbours)))]
    bond = vectors[partner] / lengths[partner]
    for d in distances(nn, SHORTEST, PUSHED_POINTS, rng):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, RATTLE, atoms.positions.shape)
        atoms.positions[mover] = atoms.positions[partner] - bond * d
        yield atoms


FAMILIES = {"dimer": dimers, "compressed": compressed, "pushed": pushed}


def build_tasks() -> list[tuple[str, str, tuple[str, ...]]]:
    """(task name, family, element symbols): every pair for dimers; elements + 50/50 alloys."""
    pairs = list(itertools.combinations_with_replacement(ELEMENTS, 2))
    systems = [(el,) for el in ELEMENTS] + list(itertools.combinations(ELEMENTS, 2))
    tasks = [(f"dimer_{a}{b}", "dimer", (a, b)) for a, b in pairs]
    for family in ("compressed", "pushed"):
        tasks += [(f"{family}_{''.join(s)}", family, s) for s in systems]
    return tasks


def run_task(name, family, symbols, a0s, seed, fmax_reject, emax_reject):
    """Frames of one task (energy and forces, no stress) and the number rejected."""
    rng = np.random.default_rng(seed)
    frames, rejected = [], 0
    for atoms in FAMILIES[family](symbols, a0s, rng):
        atoms.calc = EMT()
        frame = dataclasses.replace(label(atoms, name), stress=None)
        too_hot = frame.energy / len(frame.numbers) > emax_reject
        if too_hot or np.max(np.linalg.norm(frame.forces, axis=1)) > fmax_reject:
            rejected += 1
        else:
            frames.append(frame)
    return frames, rejected


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/emt_short_range.h5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fmax-reject", type=float, default=15.0, help="eV/Å")
    parser.add_argument("--emax-reject", type=float, default=4.0, help="eV/atom")
    parser.add_argument("--only", default=None, help="regex: run only tasks whose name matches")
    args = parser.parse_args(argv)
    a0s = {el: emt_lattice_constant(el) for el in ELEMENTS}
    metadata = {
        "script": "tools/make_emt_short_range_frames.py",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seed": args.seed,
        "only": args.only,
        "reference": "ASE EMT (Jacobsen, Stoltze & Norskov 1996)",
        "ase_version": ase.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "emt_lattice_constants": a0s,
        "points": {"dimer": DIMER_POINTS, "compressed": COMPRESSED_POINTS, "pushed": PUSHED_POINTS},
        "shortest_A": {"dimer": SHORTEST, "pushed": SHORTEST, "compressed_nn": 1.8},
        "rattle_A": RATTLE,
        "stress": "not stored",
        "fmax_reject_eV_per_A": args.fmax_reject,
        "emax_reject_eV_per_atom": args.emax_reject,
        "task_seed": "int.from_bytes(sha256(f'{seed}:{task}')[:8], 'little') >> 1",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tasks = build_tasks()
    if args.only:
        tasks = [task for task in tasks if re.search(args.only, task[0])]
    total_rejected = 0
    with FrameWriter(args.out, method="EMT", metadata=metadata) as writer:
        for k, (name, family, symbols) in enumerate(tasks):
            if name in writer.completed_tasks:
                continue
            frames, rejected = run_task(
                name,
                family,
                symbols,
                a0s,
                task_seed(args.seed, name),
                args.fmax_reject,
                args.emax_reject,
            )
            writer.append(frames, task=name)
            total_rejected += rejected
            print(
                f"[{k + 1}/{len(tasks)}] {name}: {len(frames)} frames, {rejected} rejected "
                f"(file: {len(writer)} frames)",
                flush=True,
            )
        n = len(writer)
    print(
        f"done: {n} frames, {total_rejected} rejected in this run, "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
