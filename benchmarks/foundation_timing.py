"""Time a model spec: ours vs the reference eager module and its AOTI export, same weights.

The specs are those of ``foundation_configs.py``: NequIP-OAM-L and Allegro-OAM-L at their
published sizes (89 types, float32, random seeded weights, ~9.6 M / 9.7 M parameters) on
rattled (Mg,Co,Ni,Zn)O rocksalt cells, and the tutorial-size Allegro (l_max 2 or 1) and NequIP
(``Allegro-l2-float32``, ..., ``NequIP-l1-float64``) on rattled fcc Cu cells; 1 torch thread.
The reference model is built once in the reference venv and cached
(``kwargs.json`` + ``state_dict.pt``, and the AOTInductor export ``model.nequip.pt2``; see
``foundation_reference.py``); ours is rebuilt from the same weights with
``allegro_ase.nequip_files.model_from_reference`` and wrapped in ``AllegroCalculator``.

Each model starts three worker processes (``bench_workers.py``: reference eager
``NequIPCalculator``, ours, reference AOTI ``NequIPCalculator``), so each one's peak RSS is its
own; they are kept for all sizes, in ascending order. At each size their results at the
unperturbed positions are compared first (|dE| must be < 1e-3 eV); then every call
(``get_forces()`` + ``get_stress()``, one calculation, positions moved by <= 1e-3 A, the
same for all three) goes round the three workers in turn: warm-ups, then timed rounds.
``--sequential`` runs the three processes one after the other instead (large cells, whose
~10 GiB peaks should not coincide). Wall and thread-CPU time (``time.thread_time()``, less
sensitive to a loaded machine) are recorded. The reference eager Allegro is skipped when its
predicted memory exceeds ``--max-eager-gib`` (it materialises ~1 MiB per edge at l_max 3), and
any reference eager model above ``--max-eager-atoms`` (time). Prints a markdown table and,
with >= 2 sizes, a fit of each side's peak memory per edge and atom.
``md_step_timing.py`` times MD steps with the same workers.

Usage (our venv; the reference venv's python is ``--reference-python``)::

    python benchmarks/foundation_timing.py --sizes 24 100 --repeats 5
    python benchmarks/foundation_timing.py --sizes 500 --warmup 1 --repeats 2 --sequential
    python benchmarks/foundation_timing.py --profile --models NequIP-OAM-L --sizes 100
    python benchmarks/foundation_timing.py --models Allegro-l2-float32 NequIP-l1-float32 \
        --sizes 108 500 2048 --max-eager-atoms 500
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_workers import (  # noqa: E402
    Worker,
    add_common_arguments,
    count_edges,
    our_calculator,
    prepare,
    worker_commands,
)
from foundation_configs import MODELS, cell  # noqa: E402

ENERGY_TOLERANCE = 1e-3  # eV, ours vs reference eager, float32
GIB = 1024**3
FOUNDATION_MODELS = ["NequIP-OAM-L", "Allegro-OAM-L"]


def eager_allegro_gib(kwargs: dict, edges: int) -> float:
    """Predicted extra memory of the reference eager Allegro: its contraction materialises a
    ``[edges, tensor_features, d, d, d]`` product (d = (l_max + 1)^2), ~2 alive."""
    d = (kwargs["l_max"] + 1) ** 2
    itemsize = 8 if kwargs["model_dtype"] == "float64" else 4
    return 2 * edges * kwargs["num_tensor_features"] * d**3 * itemsize / GIB


def model_cells(name: str, sizes: list[int], args, logs: Path) -> list[dict]:
    """One row per size (ascending): the cell written to ``logs``, its edges, eager skipped?"""
    import ase.io

    kwargs, rows = MODELS[name], []
    for n_atoms in sorted(sizes):
        atoms = cell(name, n_atoms)
        structure = logs / f"{name}-{len(atoms)}.traj"
        ase.io.write(structure, atoms)
        edges = count_edges(atoms, kwargs["r_max"])
        row = {"model": name, "N": len(atoms), "edges": edges,
               "formula": atoms.get_chemical_formula(), "structure": str(structure)}  # fmt: skip
        allegro = "num_tensor_features" in kwargs
        predicted = eager_allegro_gib(kwargs, edges) if allegro else 0.0
        if predicted > args.max_eager_gib:
            row["eager_skipped"] = f"not run: predicted +{predicted:.0f} GiB > --max-eager-gib"
        elif args.max_eager_atoms is not None and len(atoms) > args.max_eager_atoms:
            row["eager_skipped"] = "not run: N > --max-eager-atoms"
        rows.append(row)
    return rows


def time_cell(workers: dict[str, Worker], structure: str, calls: int, warmup: int) -> dict:
    """Load ``structure`` in every worker, get its results, then time calls round-robin."""
    for worker in workers.values():
        worker.ask(f"load {structure}")
    results = {label: worker.ask("energy") for label, worker in workers.items()}
    timing = {label: {"wall_ms": [], "cpu_ms": [], "process_cpu_ms": []} for label in workers}
    labels = list(workers)
    for call in range(calls):
        first = call % len(labels)  # rotate who goes first
        for label in labels[first:] + labels[:first]:
            reply = workers[label].ask(f"call {call}")
            if call >= warmup:
                for key in ("wall", "cpu", "process_cpu"):
                    timing[label][f"{key}_ms"].append(1e3 * reply[key])
    for label, worker in workers.items():
        timing[label]["peak_rss_mib"] = worker.ask("rss")["peak_rss_mib"]
        results[label]["timing"] = timing[label]
    return results


def run_model(name: str, sizes: list[int], args, logs: Path) -> list[dict]:
    """Time ``name`` at every size, each worker process kept across the sizes (ascending).

    With ``args.sequential`` one worker at a time. The reference eager worker is closed at the
    first size it skips (the larger ones skip it too).
    """
    rows = model_cells(name, sizes, args, logs)
    calls = args.warmup + args.repeats
    commands = worker_commands(name, calls, args)
    groups = [[k] for k in commands] if args.sequential else [list(commands)]
    results: list[dict] = [{} for _ in rows]
    for group in groups:
        workers = {k: Worker(k, commands[k], logs / f"{name}-{k}.log") for k in group}
        try:
            for row, result in zip(rows, results, strict=True):
                if "eager_skipped" in row and "ref-eager" in workers:
                    workers.pop("ref-eager").close()
                if not workers:
                    break
                start = time.perf_counter()
                result.update(time_cell(workers, row["structure"], calls, args.warmup))
                row["case_wall_s"] = row.get("case_wall_s", 0.0) + time.perf_counter() - start
                print(f"{name} N={row['N']} {list(workers)}: {time.perf_counter() - start:.0f} s",
                      flush=True)  # fmt: skip
        finally:
            for worker in workers.values():
                worker.close()
    for row, result in zip(rows, results, strict=True):
        check_row(row, result)
        row["energy_eV"] = result["ours"]["energy"]
        row.update({label: side["timing"] for label, side in result.items()})
        row["sequential"] = args.sequential
    return rows


def check_row(row: dict, results: dict) -> None:
    """Compare the sides' results at the unperturbed positions; print and record them."""
    row["check"] = {
        f"{a} vs {b}": differences(results[a], results[b])
        for a, b in (
            ("ours", "ref-eager"),
            ("ref-AOTI", "ref-eager"),
            ("ours", "ref-AOTI"),
            ("ours-compiled", "ours"),
        )
        if a in results and b in results
    }
    for pair, d in row["check"].items():
        verdict = "ok" if d["dE"] < ENERGY_TOLERANCE else f"FAIL (> {ENERGY_TOLERANCE} eV)"
        print(f"{row['model']} N={row['N']} {pair}: |dE| {d['dE']:.1e} eV, max |dF| "
              f"{d['dF']:.1e} eV/A, max |dstress| {d['dstress']:.1e} eV/A^3: {verdict}",
              flush=True)  # fmt: skip


def differences(a: dict, b: dict) -> dict:
    """|dE| (eV), max |dF| (eV/A) and max |d stress| (eV/A^3) between two results."""
    return {
        "dE": abs(a["energy"] - b["energy"]),
        "dF": float(np.abs(np.subtract(a["forces"], b["forces"])).max()),
        "dstress": float(np.abs(np.subtract(a["stress"], b["stress"])).max()),
    }


def fmt_times(side: dict | None) -> str:
    if not side:
        return "-"
    w, c = side["wall_ms"], side["cpu_ms"]
    return f"{min(w):.0f} / {statistics.median(w):.0f} · {min(c):.0f} / {statistics.median(c):.0f}"


def ratios(ours: dict, ref: dict | None) -> str:
    if not ref:
        return "-"
    wall = statistics.median(ours["wall_ms"]) / statistics.median(ref["wall_ms"])
    cpu = statistics.median(ours["cpu_ms"]) / statistics.median(ref["cpu_ms"])
    return f"{wall:.2f} · {cpu:.2f}"


def print_table(rows: list[dict]) -> None:
    print("\ntimes: min / median wall ms · min / median thread-CPU ms; ratios: ours / ref, "
          "median wall · median CPU (< 1: ours faster)\n")  # fmt: skip
    print("| model | N | edges | ref eager | ours | ours compiled | ref AOTI | ours/eager "
          "| ours/AOTI | compiled/AOTI | peak RSS MiB eager / ours / compiled / AOTI |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rss = " / ".join(f"{r[k]['peak_rss_mib']:.0f}" if k in r else "-"
                         for k in ("ref-eager", "ours", "ours-compiled", "ref-AOTI"))  # fmt: skip
        eager = fmt_times(r.get("ref-eager")) if "ref-eager" in r else r.get("eager_skipped", "-")
        compiled = r.get("ours-compiled")
        print(f"| {r['model']} | {r['N']} | {r['edges']} | {eager} | {fmt_times(r['ours'])} | "
              f"{fmt_times(compiled)} | {fmt_times(r.get('ref-AOTI'))} | "
              f"{ratios(r['ours'], r.get('ref-eager'))} | {ratios(r['ours'], r.get('ref-AOTI'))} "
              f"| {ratios(compiled, r.get('ref-AOTI')) if compiled else '-'} | {rss} |")  # fmt: skip


def memory_fit(rows: list[dict], budget_gib: float = 24.0) -> None:
    """Estimate, per model and side: peak RSS linear in edges, over the measured sizes (>= 2)."""
    for name in dict.fromkeys(r["model"] for r in rows):
        for side in ("ours", "ours-compiled", "ref-AOTI", "ref-eager"):
            own = [r for r in rows if r["model"] == name and side in r]
            if len(own) < 2:
                continue
            edges = np.array([r["edges"] for r in own], float)
            rss = np.array([r[side]["peak_rss_mib"] for r in own])
            slope, offset = np.polyfit(edges, rss, 1)
            per_atom = ", ".join(f"{1024 * slope * r['edges'] / r['N']:.0f} KiB/atom at "
                                 f"N={r['N']}" for r in own)  # fmt: skip
            text = (f"{name} {side} (estimate, linear fit of peak RSS in edges over N = "
                    f"{[r['N'] for r in own]}): {offset:.0f} MiB + {1024 * slope:.2f} KiB/edge; "
                    f"{per_atom}")  # fmt: skip
            if slope * own[-1]["edges"] < 0.05 * offset:  # flat: e.g. our Allegro in blocks
                print(f"{text}; flat in N (no per-edge growth resolved)")
                continue
            max_edges = (budget_gib * 1024 - offset) / slope
            max_atoms = max_edges / (own[-1]["edges"] / own[-1]["N"])
            print(f"{text}; {budget_gib:.0f} GiB holds ~{max_edges:.2e} edges = ~{max_atoms:.0f} "
                  "atoms of this structure")  # fmt: skip


def profile(name: str, n_atoms: int, cache: Path, calls: int = 3, rows: int = 12) -> None:
    """torch.profiler table of ``calls`` of our calls (forward + backward), top ops by self CPU.

    The profiler's "CPU" times are wall-clock durations of the ops; the thread-CPU time of the
    profiled calls is printed beside them (on a loaded machine the two differ).
    """
    import torch
    from torch.profiler import ProfilerActivity

    atoms = cell(name, n_atoms)
    atoms.calc = our_calculator(name, cache)
    for offset in (1e-3, 2e-3):
        atoms.positions[0, 0] += offset
        atoms.get_forces()
    wall, cpu = time.perf_counter(), time.thread_time()
    with torch.profiler.profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            atoms.positions[0, 0] += 1e-3
            atoms.get_forces()
            atoms.get_stress()
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    print(f"# {name}, N = {len(atoms)}, {calls} x get_forces() + get_stress(): "
          f"{1e3 * wall / calls:.0f} ms wall, {1e3 * cpu / calls:.0f} ms thread-CPU per call; "
          f"top {rows} ops by self time")  # fmt: skip
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def memory_per_size(name: str, sizes: list[int], args, logs: Path) -> None:
    """Peak RSS of one call in fresh ours / ref-AOTI processes per size: the call's own memory.

    A worker kept across sizes reports a peak that can depend on what it ran before (the
    allocator keeps freed memory); here each size gets new processes, and the peak before
    the first call (model loaded, cell read) is subtracted.
    """
    print("| model | N | edges | side | RSS before MiB | peak after one call MiB "
          "| call KiB/atom | call KiB/edge |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for row in model_cells(name, sizes, args, logs):
        commands = worker_commands(name, 1, args)
        commands.pop("ref-eager")
        workers = {k: Worker(k, c, logs / f"mem-{name}-{k}.log") for k, c in commands.items()}
        try:
            for label, worker in workers.items():
                worker.ask(f"load {row['structure']}")
                before = worker.ask("rss")["peak_rss_mib"]
                worker.ask("call 0")
                after = worker.ask("rss")["peak_rss_mib"]
                call = 1024 * (after - before)
                print(f"| {name} | {row['N']} | {row['edges']} | {label} | {before:.0f} | "
                      f"{after:.0f} | {call / row['N']:.0f} | {call / row['edges']:.1f} |",
                      flush=True)  # fmt: skip
        finally:
            for worker in workers.values():
                worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=FOUNDATION_MODELS, choices=list(MODELS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[24, 100, 500])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    add_common_arguments(parser)
    parser.add_argument("--max-eager-gib", type=float, default=10.0,
                        help="skip the reference eager Allegro above this predicted memory")  # fmt: skip
    parser.add_argument("--max-eager-atoms", type=int, default=None,
                        help="skip the reference eager model above this many atoms (time)")  # fmt: skip
    parser.add_argument("--sequential", action="store_true",
                        help="one worker process at a time (large cells: memory)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--profile", action="store_true", help="profile ours instead of timing")
    parser.add_argument("--memory", action="store_true",
                        help="instead of timing: one call's memory in fresh processes per size")  # fmt: skip
    args = parser.parse_args()
    args.cache = args.cache.expanduser()

    import torch

    torch.set_num_threads(1)
    for name in args.models:
        prepare(name, args)
    if args.profile:
        for name in args.models:
            for size in args.sizes:
                profile(name, size, args.cache)
        return
    if args.memory:
        with tempfile.TemporaryDirectory(prefix="foundation-memory-") as tmp:
            for name in args.models:
                memory_per_size(name, args.sizes, args, Path(tmp))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="foundation-timing-") as tmp:
        for name in args.models:
            for row in run_model(name, args.sizes, args, Path(tmp)):
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k in
                                  ("model", "N", "edges", "check", "case_wall_s", "eager_skipped")}),
                      flush=True)  # fmt: skip
    print_table(rows)
    memory_fit(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
