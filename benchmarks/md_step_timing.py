"""Time ASE MD steps: ours vs the reference AOTI calculator, and where our step's time goes.

The same model specs, cache and worker processes as ``foundation_timing.py``
(``bench_workers.py``): ours and the reference AOTInductor export (``--eager`` adds the
reference eager module) and ours with ``compile=True`` (``--no-ours-compiled`` leaves it out),
each in its own process, all with the same weights. In each worker,
ASE ``VelocityVerlet`` (1 fs, seeded 300 K Maxwell-Boltzmann start) runs on the same cell; a
step includes the neighbour list, the force call (with stress: the reference always computes
it for a cell, ours computes it in the same pass) and the integrator. After ``--warmup-steps``
steps, ``--rounds`` blocks of ``--steps`` steps go round the workers in turn, so a busy machine
slows all alike. Wall and thread-CPU ms per step are recorded; ours also splits its CPU time
into neighbour list (``AllegroCalculator._graph``), forward (the model) and backward
(``allegro_ase.outputs.edge_gradients``), the rest being overhead (``bench_workers.PhaseTimer``).

Usage (our venv)::

    python benchmarks/md_step_timing.py --models Allegro-l2-float32 NequIP-l1-float32 \
        --sizes 108 500 --steps 5 --rounds 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_workers import (  # noqa: E402
    PhaseTimer,
    Worker,
    add_common_arguments,
    count_edges,
    prepare,
    worker_commands,
)
from foundation_configs import MODELS, cell  # noqa: E402


def time_md(workers: dict[str, Worker], structure: str, args) -> dict[str, dict]:
    """MD blocks round-robin on ``structure``; per worker: ms per step, phases, peak RSS."""
    for worker in workers.values():
        worker.ask(f"load {structure}")
        worker.ask(f"md {args.warmup_steps}")
    timing = {label: {"wall_ms": [], "cpu_ms": [], "phases_cpu_ms": {}} for label in workers}
    labels = list(workers)
    for block in range(args.rounds):
        first = block % len(labels)
        for label in labels[first:] + labels[:first]:
            reply = workers[label].ask(f"md {args.steps}")
            timing[label]["wall_ms"].append(1e3 * reply["wall"] / args.steps)
            timing[label]["cpu_ms"].append(1e3 * reply["cpu"] / args.steps)
            for phase, seconds in reply.get("phases", {}).get("cpu", {}).items():
                total = timing[label]["phases_cpu_ms"].get(phase, 0.0) + 1e3 * seconds
                timing[label]["phases_cpu_ms"][phase] = total
    steps = args.rounds * args.steps
    for label, worker in workers.items():
        phases = timing[label]["phases_cpu_ms"]
        timing[label]["phases_cpu_ms"] = {k: v / steps for k, v in phases.items()}
        timing[label]["peak_rss_mib"] = worker.ask("rss")["peak_rss_mib"]
    return timing


def run_model(name: str, args, logs: Path) -> list[dict]:
    """MD timings of ``name`` at every size (ascending), the workers kept across sizes."""
    import ase.io

    commands = worker_commands(name, 0, args, phases=True)
    if not args.eager:
        commands.pop("ref-eager")
    workers = {
        k: Worker(k, command, logs / f"md-{name}-{k}.log") for k, command in commands.items()
    }
    rows = []
    try:
        for size in sorted(args.sizes):
            atoms = cell(name, size)
            structure = logs / f"md-{name}-{len(atoms)}.traj"
            ase.io.write(structure, atoms)
            row = {
                "model": name,
                "N": len(atoms),
                "edges": count_edges(atoms, MODELS[name]["r_max"]),
            }
            row.update(time_md(workers, str(structure), args))
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        for worker in workers.values():
            worker.close()
    return rows


def fmt(side: dict | None) -> str:
    if not side:
        return "-"
    w, c = side["wall_ms"], side["cpu_ms"]
    return f"{min(w):.0f} / {statistics.median(w):.0f} · {min(c):.0f} / {statistics.median(c):.0f}"


def split(ours: dict) -> str:
    """Our mean step, thread-CPU ms: neighbour list / forward / backward / overhead (and %)."""
    total = statistics.mean(ours["cpu_ms"])
    phases = [ours["phases_cpu_ms"].get(phase, 0.0) for phase in PhaseTimer.PHASES]
    parts = [*phases, total - sum(phases)]
    return " / ".join(f"{ms:.1f} ({100 * ms / total:.0f} %)" for ms in parts)


def print_table(rows: list[dict]) -> None:
    print("\nms per MD step: min / median wall · min / median thread-CPU; ratio: median wall · "
          "median CPU, ours / ref AOTI; our step split by mean thread-CPU ms\n")  # fmt: skip
    print("| model | N | edges | ref AOTI | ours | ours/AOTI | ours: neighbour list / forward "
          "/ backward / overhead | peak RSS MiB ours / AOTI |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ours, ref = r["ours"], r.get("ref-AOTI")
        ratio = "-"
        if ref:
            wall = statistics.median(ours["wall_ms"]) / statistics.median(ref["wall_ms"])
            cpu = statistics.median(ours["cpu_ms"]) / statistics.median(ref["cpu_ms"])
            ratio = f"{wall:.2f} · {cpu:.2f}"
        rss = f"{ours['peak_rss_mib']:.0f} / " + (f"{ref['peak_rss_mib']:.0f}" if ref else "-")
        print(f"| {r['model']} | {r['N']} | {r['edges']} | {fmt(ref)} | {fmt(ours)} | {ratio} "
              f"| {split(ours)} | {rss} |")  # fmt: skip
        compiled = r.get("ours-compiled")
        if compiled:
            ratio = "-"
            if ref:
                wall = statistics.median(compiled["wall_ms"]) / statistics.median(ref["wall_ms"])
                cpu = statistics.median(compiled["cpu_ms"]) / statistics.median(ref["cpu_ms"])
                ratio = f"{wall:.2f} · {cpu:.2f}"
            print(f"|  | (ours compiled) | | | {fmt(compiled)} | {ratio} | | "
                  f"{compiled['peak_rss_mib']:.0f} |")  # fmt: skip
        if "ref-eager" in r:
            print(f"|  | (ref eager: {fmt(r['ref-eager'])}) | | | | | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["Allegro-l2-float32"], choices=list(MODELS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[108])
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=4, help="timed blocks per worker")
    parser.add_argument("--eager", action="store_true", help="also the reference eager module")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    add_common_arguments(parser)
    args = parser.parse_args()
    args.cache = args.cache.expanduser()
    for name in args.models:
        prepare(name, args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="md-step-timing-") as tmp:
        for name in args.models:
            rows += run_model(name, args, Path(tmp))
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
