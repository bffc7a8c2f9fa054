"""Time the foundation-sized models: ours vs the reference eager module and its AOTI export.

NequIP-OAM-L and Allegro-OAM-L at their published sizes (``foundation_configs.py``: 89 types,
float32, random seeded weights, ~9.6 M / 9.7 M parameters) on rattled (Mg,Co,Ni,Zn)O rocksalt
cells, 1 torch thread. The reference model is built once in the reference venv and cached
(``kwargs.json`` + ``state_dict.pt``, and the AOTInductor export ``model.nequip.pt2``; see
``foundation_reference.py``); ours is rebuilt from the same weights with
``allegro_ase.nequip_files.model_from_reference`` and wrapped in ``AllegroCalculator``.

Each (model, size) case starts three worker processes (reference eager ``NequIPCalculator``,
ours, reference AOTI ``NequIPCalculator``), so each one's peak RSS is its own. Their results
at the unperturbed positions are compared first (|dE| must be < 1e-3 eV); then every call
(``get_forces()`` + ``get_stress()``, one calculation, positions moved by <= 1e-3 A, the
same for all three) goes round the three workers in turn: warm-ups, then timed rounds.
``--sequential`` runs the three processes one after the other instead (large cells, whose
~10 GiB peaks should not coincide). Wall and thread-CPU time (``time.thread_time()``, less
sensitive to a loaded machine) are recorded. The reference eager Allegro is skipped when its
predicted memory exceeds ``--max-eager-gib`` (it materialises ~1 MiB per edge at l_max 3).
Prints a markdown table and, with >= 2 sizes, an estimate of our memory per edge and atom.

Usage (our venv; the reference venv's python is ``--reference-python``)::

    python benchmarks/foundation_timing.py --sizes 24 100 --repeats 5
    python benchmarks/foundation_timing.py --sizes 500 --warmup 1 --repeats 2 --sequential
    python benchmarks/foundation_timing.py --profile --models NequIP-OAM-L --sizes 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from foundation_configs import MODELS, model_key, oxide_cell, serve  # noqa: E402

DEFAULT_CACHE = Path(os.environ.get("ALLEGRO_ASE_BENCH_CACHE", "~/.cache/allegro-ase-bench"))
ENERGY_TOLERANCE = 1e-3  # eV, ours vs reference eager, float32
GIB = 1024**3


def our_calculator(name: str, cache: Path):
    """``AllegroCalculator`` around our rebuild of the cached reference weights."""
    import torch

    from allegro_ase import AllegroCalculator
    from allegro_ase.nequip_files import model_from_reference

    folder = cache / model_key(name)
    kwargs = json.loads((folder / "kwargs.json").read_text())
    state = torch.load(folder / "state_dict.pt", weights_only=True)
    return AllegroCalculator(model_from_reference(kwargs, state, "model.func."), device="cpu")


def count_edges(atoms, r_max: float) -> int:
    from allegro_ase.neighbors import neighbor_list

    return int(neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, r_max)[0].shape[1])


def eager_allegro_gib(kwargs: dict, edges: int) -> float:
    """Predicted extra memory of the reference eager Allegro: its contraction materialises a
    float32 ``[edges, tensor_features, d, d, d]`` product (d = (l_max + 1)^2), ~2 alive."""
    d = (kwargs["l_max"] + 1) ** 2
    return 2 * edges * kwargs["num_tensor_features"] * d**3 * 4 / GIB


class Worker:
    """A timing worker process (``foundation_configs.serve``) and its pipe."""

    def __init__(self, label: str, command: list[str], log: Path):
        self.label, self.log = label, log
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"),
            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.process_cpus: list[float] = []

    def ask(self, request: str) -> dict:
        if request:
            self.process.stdin.write(request + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            tail = self.log.read_text()[-3000:]
            raise RuntimeError(f"worker {self.label} died (log {self.log}):\n{tail}")
        return json.loads(line)

    def close(self) -> float:
        rss = self.ask("rss")["peak_rss_mib"]
        self.ask_quit()
        return rss

    def ask_quit(self) -> None:
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait()


def worker_commands(name, structure, calls, args, skip_eager) -> dict[str, list[str]]:
    ref = [args.reference_python, str(HERE / "foundation_reference.py"), "worker", name,
           "--cache", str(args.cache), "--structure", str(structure), "--calls", str(calls)]  # fmt: skip
    ours = [sys.executable, __file__, "--worker", name, "--cache", str(args.cache),
            "--structure", str(structure), "--calls", str(calls)]  # fmt: skip
    commands = {"ref-eager": ref + ["--kind", "eager"], "ours": ours}
    if (args.cache / model_key(name) / "model.nequip.pt2").is_file():
        commands["ref-AOTI"] = ref + ["--kind", "aoti"]
    if skip_eager:
        commands.pop("ref-eager")
    return commands


def time_workers(workers: dict[str, Worker], calls: int, warmup: int) -> dict[str, dict]:
    """Start, check, time and close ``workers`` together: every call goes round all of them."""
    for worker in workers.values():
        worker.ask("")  # wait for "ready"
    results = {k: w.ask("energy") for k, w in workers.items()}
    for call in range(calls):
        order = list(workers.values())
        order = order[call % len(order) :] + order[: call % len(order)]  # rotate who goes first
        for worker in order:
            reply = worker.ask(f"call {call}")
            if call >= warmup:
                worker.walls.append(reply["wall"])
                worker.cpus.append(reply["cpu"])
                worker.process_cpus.append(reply["process_cpu"])
    for label, worker in workers.items():
        results[label]["timing"] = {
            "wall_ms": [1e3 * t for t in worker.walls], "cpu_ms": [1e3 * t for t in worker.cpus],
            "process_cpu_ms": [1e3 * t for t in worker.process_cpus],
            "peak_rss_mib": worker.close(),
        }  # fmt: skip
    return results


def run_case(name: str, n_atoms: int, args, logs: Path) -> dict:
    """Time one (model, size); with ``args.sequential`` one worker process at a time."""
    import ase.io

    atoms = oxide_cell(n_atoms)
    structure = logs / f"cell-{len(atoms)}.traj"
    ase.io.write(structure, atoms)
    kwargs = MODELS[name]
    edges = count_edges(atoms, kwargs["r_max"])
    row = {"model": name, "N": len(atoms), "edges": edges, "formula": atoms.get_chemical_formula()}
    predicted = eager_allegro_gib(kwargs, edges) if "l_max" in kwargs else 0.0
    skip_eager = predicted > args.max_eager_gib
    if skip_eager:
        row["eager_skipped"] = f"predicted +{predicted:.0f} GiB > --max-eager-gib"
    calls = args.warmup + args.repeats
    start = time.perf_counter()
    commands = worker_commands(name, structure, calls, args, skip_eager)
    groups = [[k] for k in commands] if args.sequential else [list(commands)]
    results = {}
    for group in groups:
        workers = {k: Worker(k, commands[k], logs / f"{name}-{k}.log") for k in group}
        results.update(time_workers(workers, calls, args.warmup))
    row["check"] = {
        f"{a} vs {b}": differences(results[a], results[b])
        for a, b in (("ours", "ref-eager"), ("ref-AOTI", "ref-eager"), ("ours", "ref-AOTI"))
        if a in results and b in results
    }
    for pair, d in row["check"].items():
        verdict = "ok" if d["dE"] < ENERGY_TOLERANCE else f"FAIL (> {ENERGY_TOLERANCE} eV)"
        print(f"{name} N={len(atoms)} {pair}: |dE| {d['dE']:.1e} eV, max |dF| {d['dF']:.1e} "
              f"eV/A, max |dstress| {d['dstress']:.1e} eV/A^3: {verdict}", flush=True)  # fmt: skip
    row["energy_eV"] = results["ours"]["energy"]
    row.update({label: result["timing"] for label, result in results.items()})
    row["case_wall_s"] = time.perf_counter() - start
    row["sequential"] = args.sequential
    return row


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
    print("| model | N | edges | ref eager | ours | ref AOTI | ours/eager | ours/AOTI "
          "| peak RSS MiB eager / ours / AOTI |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rss = " / ".join(f"{r[k]['peak_rss_mib']:.0f}" if k in r else "-"
                         for k in ("ref-eager", "ours", "ref-AOTI"))  # fmt: skip
        eager = fmt_times(r.get("ref-eager")) if "ref-eager" in r else r.get("eager_skipped", "-")
        print(f"| {r['model']} | {r['N']} | {r['edges']} | {eager} | {fmt_times(r['ours'])} | "
              f"{fmt_times(r.get('ref-AOTI'))} | {ratios(r['ours'], r.get('ref-eager'))} | "
              f"{ratios(r['ours'], r.get('ref-AOTI'))} | {rss} |")  # fmt: skip


def memory_fit(rows: list[dict], budget_gib: float = 24.0) -> None:
    """Estimate: our peak RSS linear in edges, from the measured sizes (>= 2)."""
    for name in dict.fromkeys(r["model"] for r in rows):
        own = [r for r in rows if r["model"] == name]
        if len(own) < 2:
            continue
        edges = np.array([r["edges"] for r in own], float)
        rss = np.array([r["ours"]["peak_rss_mib"] for r in own])
        slope, offset = np.polyfit(edges, rss, 1)
        per_atom = {r["N"]: slope * r["edges"] / r["N"] for r in own}
        max_edges = (budget_gib * 1024 - offset) / slope
        max_atoms = max_edges / (own[-1]["edges"] / own[-1]["N"])
        print(f"{name} (estimate, linear fit of our peak RSS in edges over N = "
              f"{[r['N'] for r in own]}): {offset:.0f} MiB + {1024 * slope:.1f} KiB/edge; "
              + ", ".join(f"{v:.2f} MiB/atom at N={k}" for k, v in per_atom.items())
              + f"; {budget_gib:.0f} GiB holds ~{max_edges:.2e} edges = ~{max_atoms:.0f} atoms "
              "of this oxide")  # fmt: skip


def prepare(name: str, args) -> None:
    """Build (and AOTI-compile) the reference model once; reuse the cache afterwards."""
    folder = args.cache / model_key(name)
    step = [args.reference_python, str(HERE / "foundation_reference.py")]
    if not (folder / "state_dict.pt").is_file():
        subprocess.run([*step, "build", name, "--cache", str(args.cache)], check=True)
    if args.compile and not (folder / "model.nequip.pt2").is_file():
        log = folder / "compile.log"
        print(f"{name}: AOTI export (log {log}) ...", flush=True)
        with log.open("w") as out:
            done = subprocess.run([*step, "compile", name, "--cache", str(args.cache)],
                                  stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        if done.returncode:
            print(f"{name}: AOTI export FAILED; timing eager only. Last lines of {log}:\n"
                  + "\n".join(log.read_text().splitlines()[-15:]))  # fmt: skip


def profile(name: str, n_atoms: int, cache: Path, rows: int = 10) -> None:
    """torch.profiler table of one of our calls (forward + backward), top ops by self CPU."""
    import torch
    from torch.profiler import ProfilerActivity

    atoms = oxide_cell(n_atoms)
    atoms.calc = our_calculator(name, cache)
    for offset in (1e-3, 2e-3):
        atoms.positions[0, 0] += offset
        atoms.get_forces()
    atoms.positions[0, 0] += 1e-3
    with torch.profiler.profile(activities=[ProfilerActivity.CPU]) as prof:
        atoms.get_forces()
        atoms.get_stress()
    print(f"# {name}, N = {len(atoms)}, one get_forces() + get_stress(), top {rows} by self CPU")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[24, 100, 500])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--reference-python", default="/work/refvenv/bin/python")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="do not AOTI-export a model that has no cached export")  # fmt: skip
    parser.add_argument("--max-eager-gib", type=float, default=10.0,
                        help="skip the reference eager Allegro above this predicted memory")  # fmt: skip
    parser.add_argument("--sequential", action="store_true",
                        help="one worker process at a time (large cells: memory)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--profile", action="store_true", help="profile ours instead of timing")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--structure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cache = args.cache.expanduser()

    import torch

    torch.set_num_threads(1)
    if args.worker:
        import ase.io

        serve(our_calculator(args.worker, args.cache), ase.io.read(args.structure), args.calls)
        return
    for name in args.models:
        prepare(name, args)
    if args.profile:
        for name in args.models:
            for size in args.sizes:
                profile(name, size, args.cache)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="foundation-timing-") as tmp:
        for size in args.sizes:
            for name in args.models:
                row = run_case(name, size, args, Path(tmp))
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
