"""Serial calls vs one batched call for many small structures (NEB images, screening).

For each case, every "step" evaluates energy and forces of all images once: serially (one
``calculate`` per image, as ASE's NEB does with one calculator per image) or with one
``calculate_batch`` call (what :class:`allegro_ase.images.BatchedImages` does). Positions move
by ~1e-3 Å before each step, so each step rebuilds the neighbour lists. The two ways alternate
step by step (serial, batched, serial, ...) so that a busy machine slows both alike; wall and
thread-CPU time per step are reported with their ratio.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/batch_timing.py --model allegro-emt-metals --device cpu
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from ase.build import add_adsorbate, bulk, fcc100

from allegro_ase import AllegroCalculator

CASES = {
    # 7 NEB images of a 97-atom Au adatom on an Al(100) slab
    "NEB 7 x 97": lambda: neb_images(7),
    # 16 rattled 32-atom alloy cells (screening)
    "16 x 32 bulk": lambda: alloys(16, 2),
    # 64 rattled 4-atom cells (tiny structures: launch overhead dominates)
    "64 x 4 bulk": lambda: alloys(64, 1),
}


def neb_images(count: int) -> list:
    slab = fcc100("Al", size=(4, 4, 6), vacuum=6.0)
    add_adsorbate(slab, "Au", 1.7, "hollow")
    images = []
    for k in range(count):
        image = slab.copy()
        image.positions[-1, 0] += k / (count - 1) * slab.cell[0, 0] / 4
        images.append(image)
    return images


def alloys(count: int, repeat: int) -> list:
    rng = np.random.default_rng(0)
    structures = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * repeat
        atoms.numbers[rng.random(len(atoms)) < 0.3] = 79
        atoms.rattle(0.05, seed=k)
        structures.append(atoms)
    return structures


def timed(function) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    function()
    return time.perf_counter() - wall, time.thread_time() - cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="allegro-emt-metals")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    calc = AllegroCalculator.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    rng = np.random.default_rng(1)
    print(f"# {args.model} {args.dtype} on {args.device}, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    print("| case | serial ms/step (CPU) | batched ms/step (CPU) | batched/serial wall |")
    print("|---|---|---|---|")
    for name, make in CASES.items():
        images = make()
        times = {"serial": [], "batched": []}
        for step in range(args.steps + 1):
            for image in images:
                image.positions += rng.normal(scale=1e-3, size=image.positions.shape)

            for way, function in (
                ("serial", lambda images=images: [calc.calculate(a, ["energy"]) for a in images]),
                ("batched", lambda images=images: calc.calculate_batch(images)),
            ):
                wall, cpu = timed(function)
                if step:  # the first step warms up
                    times[way].append((wall, cpu))
        (sw, sc), (bw, bc) = (
            tuple(1e3 * statistics.median(t[i] for t in times[way]) for i in (0, 1))
            for way in ("serial", "batched")
        )
        print(f"| {name} | {sw:.1f} ({sc:.1f}) | {bw:.1f} ({bc:.1f}) | {bw / sw:.2f} |")


if __name__ == "__main__":
    main()
