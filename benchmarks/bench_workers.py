"""Timing worker processes shared by ``foundation_timing.py`` and ``md_step_timing.py``.

Each calculator (reference eager ``NequIPCalculator``, ours, ours with ``compile=True``,
reference AOTI) lives in its own
process, which answers requests on a pipe (``foundation_configs.serve``): ``load`` a cell,
``energy``, ``call K``, ``md K``, ``rss``. A worker is kept for all sizes of one model, the
sizes in ascending order, so its peak RSS after a size is that size's peak (memory grows with
the cell). Run as a script, this module is our side's worker::

    python benchmarks/bench_workers.py MODEL --cache DIR --calls K [--phases | --compile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from foundation_configs import MODELS, model_key, serve  # noqa: E402

DEFAULT_CACHE = Path(os.environ.get("ALLEGRO_ASE_BENCH_CACHE", "~/.cache/allegro-ase-bench"))
DEFAULT_REFERENCE_PYTHON = "/work/refvenv/bin/python"


def our_calculator(name: str, cache: Path, compile: bool = False):
    """``AllegroCalculator`` around our rebuild of the cached reference weights.

    ``compile=True``: our AOTInductor path (compiled once into our own cache, then loaded).
    """
    import torch

    from allegro_ase import AllegroCalculator
    from allegro_ase.nequip_files import model_from_reference

    folder = cache / model_key(name)
    kwargs = json.loads((folder / "kwargs.json").read_text())
    state = torch.load(folder / "state_dict.pt", weights_only=True)
    model = model_from_reference(kwargs, state, "model.func.")
    return AllegroCalculator(model, device="cpu", compile=compile)


def count_edges(atoms, r_max: float) -> int:
    from allegro_ase.neighbors import neighbor_list

    return int(neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, r_max)[0].shape[1])


class PhaseTimer:
    """Wall and thread-CPU seconds spent in our calculator's phases, summed since ``reset()``.

    Wraps, in this process only, ``AllegroCalculator._graph`` (neighbour list and graph), the
    model's ``forward`` and :func:`allegro_ase.outputs.edge_gradients` (the backward pass);
    whatever else a call or MD step takes is overhead.
    """

    PHASES = ("neighbour list", "forward", "backward")

    def __init__(self, calculator):
        import allegro_ase.outputs

        calculator._graph = self._timed("neighbour list", calculator._graph)
        calculator.model.forward = self._timed("forward", calculator.model.forward)
        allegro_ase.outputs.edge_gradients = self._timed(
            "backward", allegro_ase.outputs.edge_gradients
        )
        self.reset()

    def reset(self) -> None:
        self.wall = dict.fromkeys(self.PHASES, 0.0)
        self.cpu = dict.fromkeys(self.PHASES, 0.0)

    def totals(self) -> dict:
        return {"wall": dict(self.wall), "cpu": dict(self.cpu)}

    def _timed(self, phase: str, function):
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.wall[phase] += time.perf_counter() - wall
                self.cpu[phase] += time.thread_time() - cpu

        return timed


class Worker:
    """A timing worker process (``foundation_configs.serve``) and its pipe."""

    def __init__(self, label: str, command: list[str], log: Path):
        self.label, self.log = label, log
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"),
            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        self.ready = False

    def ask(self, request: str) -> dict:
        """Send ``request`` (after waiting for the worker to be ready) and read its answer."""
        if not self.ready:
            self.ready = self._read()["ready"]
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            tail = self.log.read_text()[-3000:]
            raise RuntimeError(f"worker {self.label} died (log {self.log}):\n{tail}")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait()


def worker_commands(name: str, calls: int, args, phases: bool = False) -> dict[str, list[str]]:
    """Command lines of the workers of ``name``; no ``ref-AOTI`` without an export."""
    ref = [args.reference_python, str(HERE / "foundation_reference.py"), "worker", name,
           "--cache", str(args.cache), "--calls", str(calls)]  # fmt: skip
    ours = [sys.executable, __file__, name, "--cache", str(args.cache), "--calls", str(calls)]
    commands = {"ref-eager": ref + ["--kind", "eager"], "ours": ours + ["--phases"] * phases}
    if args.ours_compiled:
        commands["ours-compiled"] = ours + ["--compile"]
    if (args.cache / model_key(name) / "model.nequip.pt2").is_file():
        commands["ref-AOTI"] = ref + ["--kind", "aoti"]
    return commands


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


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both timing scripts share: cache, reference interpreter, export."""
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--reference-python", default=DEFAULT_REFERENCE_PYTHON)
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="do not AOTI-export a model that has no cached export")  # fmt: skip
    parser.add_argument("--no-ours-compiled", dest="ours_compiled", action="store_false",
                        help="leave out our compile=True worker")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description="our side's timing worker")
    parser.add_argument("name", choices=sorted(MODELS))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--calls", type=int, default=0, help="timed + warm-up calls")
    parser.add_argument("--phases", action="store_true", help="time our phases too")
    parser.add_argument("--compile", action="store_true", help="our compiled path")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    calc = our_calculator(args.name, args.cache.expanduser(), args.compile)
    serve(calc, args.calls, PhaseTimer(calc) if args.phases else None)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
