"""Time ``AllegroCalculator.get_forces()`` and, in the same run, the reference calculator.

Each (size, dtype) case runs in a fresh subprocess so that its peak memory is its own. The
structure is rattled fcc Cu (a = 3.61 Å); positions move by ~1e-3 Å before every call, so
every call rebuilds the neighbour list and runs forward + backward (forces and stress).
The model is untrained (random weights) with the reference hyperparameters given below.

The reference timing comes from ``reference_nequip_timing.py`` run with the interpreter of a
separate venv holding nequip 0.19 + nequip-allegro 0.8 (``--reference-python``); it builds
the same architecture in eager mode and times ``NequIPCalculator.get_forces()`` the same way.

Usage::

    python benchmarks/calculator_timing.py --sizes 108 500 --dtypes float32 float64 \
        --reference-python /work/refvenv/bin/python

``--model NAME`` times a shipped zoo model instead (it must know Cu and Au; the cell is then
Cu with every 4th atom Au), e.g. to compare the Allegro and NequIP EMT models; there is no
reference column for those.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HYPERPARAMETERS = dict(
    r_max=5.0, l_max=2, num_layers=2, num_scalar_features=64, num_tensor_features=16,
    avg_num_neighbors=42.0,
)  # fmt: skip


def run_case(
    size: int, dtype: str, repeats: int, threads: int, backend: str, model: str | None = None
) -> dict:
    """Time one case in this process; returns a JSON-ready dict."""
    import torch
    from ase.build import bulk

    from allegro_ase import AllegroCalculator, AllegroConfig, AllegroModel

    torch.set_num_threads(threads)
    repeat = round((size / 4) ** (1 / 3))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * repeat
    atoms.rattle(0.02, seed=0)
    if model:
        atoms.numbers[::4] = 79
        calc = AllegroCalculator.from_pretrained(
            model, device="cpu", dtype=dtype, neighbor_list=backend
        )
    else:
        config = AllegroConfig(type_names=["Cu"], model_dtype=dtype, seed=456, **HYPERPARAMETERS)
        calc = AllegroCalculator(AllegroModel(config), device="cpu", neighbor_list=backend)
    atoms.calc = calc
    rng = np.random.default_rng(0)
    times = []
    for call in range(2 + repeats):
        atoms.positions += rng.uniform(-1e-3, 1e-3, atoms.positions.shape)
        start = time.perf_counter()
        atoms.get_forces()
        if call >= 2:
            times.append(time.perf_counter() - start)
    edges = _count_edges(atoms, calc.model.r_max)
    return {
        "N": len(atoms), "dtype": dtype, "edges": edges,
        "min_ms": 1e3 * min(times), "median_ms": 1e3 * statistics.median(times),
        "atom_steps_per_s": len(atoms) / statistics.median(times),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip


def _count_edges(atoms, r_max: float) -> int:
    from allegro_ase.neighbors import neighbor_list

    return neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, r_max)[0].shape[1]


def reference_timings(python: str, sizes, dtypes, repeats: int, threads: int) -> dict:
    """Run the reference script in its own venv and key its results by (N, dtype)."""
    out = HERE / ".reference_timing.json"
    command = [
        python, str(HERE / "reference_nequip_timing.py"), "--sizes", *map(str, sizes),
        "--dtypes", *dtypes, "--repeats", str(repeats), "--threads", str(threads),
        "--json", str(out), "--r-max", "5.0", "--l-max", "2", "--num-layers", "2",
        "--num-scalar-features", "64", "--num-tensor-features", "16",
        "--avg-num-neighbors", "42.0", "--type-names", "Cu",
    ]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    rows = json.loads(out.read_text())
    out.unlink()
    rows = rows["results"] if isinstance(rows, dict) else rows
    return {(row["n_atoms"], row["dtype"]): row for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[108, 500])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--neighbor-list", default="matscipy")
    parser.add_argument("--reference-python", default=None, help="python of the nequip venv")
    parser.add_argument("--model", default=None, help="a zoo model instead of the untrained one")
    parser.add_argument("--case", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:
        size, dtype = int(args.case[0]), args.case[1]
        result = run_case(size, dtype, args.repeats, args.threads, args.neighbor_list, args.model)
        print(json.dumps(result))
        return

    rows = []
    for size in args.sizes:
        for dtype in args.dtypes:
            command = [
                sys.executable, __file__, "--case", str(size), dtype, "--repeats",
                str(args.repeats), "--threads", str(args.threads), "--neighbor-list",
                args.neighbor_list, *(["--model", args.model] if args.model else []),
            ]  # fmt: skip
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(output.strip().splitlines()[-1]))
    reference = {}
    if args.reference_python and not args.model:
        reference = reference_timings(
            args.reference_python, args.sizes, args.dtypes, args.repeats, args.threads
        )

    print(
        f"# AllegroCalculator.get_forces(), CPU, {args.threads} thread(s), "
        f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')}, "
        f"neighbour list {args.neighbor_list}, "
        + (f"zoo model {args.model}" if args.model else f"hyperparameters {HYPERPARAMETERS}")
    )
    print("| N | dtype | edges | ours min / median ms | atom-steps/s | peak RSS MiB "
          "| reference min / median ms | speed-up (median) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        ref = reference.get((row["N"], row["dtype"]))
        ref_text = f"{ref['min_ms']:.1f} / {ref['median_ms']:.1f}" if ref else "-"
        ratio = f"{ref['median_ms'] / row['median_ms']:.2f}x" if ref else "-"
        print(
            f"| {row['N']} | {row['dtype']} | {row['edges']} | {row['min_ms']:.1f} / "
            f"{row['median_ms']:.1f} | {row['atom_steps_per_s']:.0f} | "
            f"{row['peak_rss_mib']:.0f} | {ref_text} | {ratio} |"
        )


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
