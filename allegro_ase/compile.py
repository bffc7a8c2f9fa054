"""Ahead-of-time compiled energies and edge gradients: the calculator's opt-in fast path.

``AllegroCalculator(model, compile=True)`` replaces the eager forward and backward pass by one
program compiled with AOTInductor (the compiler behind ``torch.compile``): the model's forward
and its autograd backward are unfolded into one graph, exported with a dynamic number of atoms
N >= 1 and edges E >= 0, and compiled to native code once per model, device and torch version.
Every later structure, whatever its size, runs the same program: nothing recompiles during MD.

The program is :class:`EnergyAndEdgeGradients`: edge vectors in, per-atom energies and
edge gradients out, exactly what :func:`allegro_ase.outputs.energies_and_edge_gradients`
computes eagerly, so forces, virials and the blocks of centre atoms are shared with the eager
path. Compiled packages are cached in ``<cache>/compiled/`` (``$ALLEGRO_ASE_CACHE`` or the user
cache) under a key of the weights, config, package and torch versions, device and CPU
instruction set, with the sha256 of each package recorded beside it and checked on every load:
a package that does not match is compiled again.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import time
import warnings
from pathlib import Path

import torch

from . import __version__
from .graph import edge_vectors
from .io.checkpoint import file_sha256
from .io.export import CHECK_ATOL, exportable, trace_and_export
from .io.targets import example_graph
from .outputs import energies_and_edge_gradients, graph_pairs, shares_reverse_edges

INPUTS = ("edge_vec", "edge_index", "atom_types")
PAIR_INPUTS = ("pair_first", "pair_of_edge")  # models that share reverse edges take these too
logger = logging.getLogger(__name__)


class CompileError(RuntimeError):
    """The model could not be compiled, or the compiled program disagrees with the model."""


class EnergyAndEdgeGradients(torch.nn.Module):
    """The compiled function: (E, 3) edge vectors, (2, E) edge index, (N,) types -> outputs.

    A model that shares reverse edges (``shares_reverse_edges``) also takes (P,) ``pair_first``
    and (E,) ``pair_of_edge`` (:func:`~allegro_ase.graph.reverse_edge_pairs`). Returns (N,)
    float64 per-atom energies (eV) and (E, 3) float64 gradients of the total energy with
    respect to the edge vectors (eV/Å).
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self,
        edge_vec: torch.Tensor,
        edge_index: torch.Tensor,
        atom_types: torch.Tensor,
        *pairs: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-atom energies and edge gradients (traced, then compiled)."""
        return energies_and_edge_gradients(self.model, edge_vec, edge_index, atom_types, *pairs)


class CompiledModel:
    """A compiled :class:`EnergyAndEdgeGradients` package, called like its eager twin.

    Parameters
    ----------
    path : pathlib.Path
        The ``.pt2`` package (native code: only packages this module compiled are loaded).
    device : torch.device
        Where it runs (the device type it was compiled for).
    """

    def __init__(self, path: Path, device: torch.device, takes_pairs: bool):
        self.path, self.device = Path(path), torch.device(device)
        self.takes_pairs = takes_pairs
        index = self.device.index if self.device.index is not None else -1
        self.runner = torch._inductor.aoti_load_package(str(self.path), device_index=index)

    def __call__(
        self,
        edge_vec: torch.Tensor,
        edge_index: torch.Tensor,
        atom_types: torch.Tensor,
        *pairs: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) energies and (E, 3) edge gradients, float64, as the eager function.

        A program that takes reverse-edge pairs is given one pair per edge when a caller has
        none (e.g. blocks of centre atoms): correct, only without the saving.
        """
        inputs = [edge_vec.detach().contiguous(), edge_index.contiguous(), atom_types.contiguous()]
        if self.takes_pairs:
            if not pairs:
                edges = torch.arange(edge_vec.shape[0], device=edge_vec.device)
                pairs = (edges, edges)
            inputs += [x.contiguous() for x in pairs]
        energies, edge_grad = self.runner(inputs)
        return energies, edge_grad

    def __reduce__(self):  # the native runner cannot be pickled: reload the package instead
        return (CompiledModel, (self.path, self.device, self.takes_pairs))


def compiled_cache_dir() -> Path:
    """Where compiled packages are kept: ``<cache_dir()>/compiled``."""
    from .zoo import cache_dir

    return cache_dir() / "compiled"


def compile_key(model: torch.nn.Module, device: torch.device, threads: str = "serial") -> str:
    """sha256 of everything the compiled program depends on: weights, config, code, ISA, threads.

    The code is the source of every module class in the model and of this package's
    derivative code, so an edited (unreleased) checkout never loads a stale program.
    ``threads`` is the CPU program's kind (:func:`thread_mode`).
    """
    import e3nn

    digest = hashlib.sha256()
    header = {
        "allegro_ase": __version__,
        "e3nn": e3nn.__version__,
        "torch": torch.__version__,
        "device": device.type,
        "isa": _instruction_set(device),
        "threads": threads if device.type == "cpu" else None,
        "model": type(model).__name__,
        "config": model.config.to_dict(),
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for path in source_files(model):
        digest.update(Path(path).read_bytes())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def source_files(model: torch.nn.Module) -> list[str]:
    """List the Python files that define ``model``'s module classes, and the derivative code."""
    from . import outputs

    files = {outputs.__file__, __file__}
    classes = {cls for module in model.modules() for cls in type(module).__mro__}
    for cls in classes:
        try:
            files.add(inspect.getsourcefile(cls))
        except TypeError:  # a built-in or generated class without a source file
            continue
    return sorted(name for name in files if name)


def _instruction_set(device: torch.device) -> str:
    """Name the vector instruction set Inductor compiles for (or the CUDA capability)."""
    if device.type == "cuda":
        return "sm_{}{}".format(*torch.cuda.get_device_capability(device))
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    return str(pick_vec_isa()) or "scalar"


def thread_mode(num_threads: int | None = None) -> str:
    """Return ``"serial"`` for one CPU thread, else ``"parallel"``.

    Inductor specialises CPU code to a thread count: for one thread it writes plain loops and
    sums (no OpenMP, no atomic adds), the fastest code for single-threaded runs such as one
    MD process per core; otherwise OpenMP loops that follow the thread count at run time
    (``torch.set_num_threads``). Each kind is compiled and cached once.
    """
    threads = torch.get_num_threads() if num_threads is None else num_threads
    return "serial" if threads == 1 else "parallel"


def compile_model(
    model: torch.nn.Module, device: torch.device, num_threads: int | None = None
) -> CompiledModel:
    """Return the compiled program of ``model`` on ``device``, compiling it if not cached.

    Compiling takes about 0.5-2 minutes on a CPU (logged at INFO level); later calls, in this
    or any other process, load the cached package in well under a second. On a CPU the
    program is made for ``num_threads`` threads (default: torch's current count): serial for
    one, otherwise parallel with the thread count read at run time (:func:`thread_mode`).

    Raises
    ------
    CompileError
        If compiling fails (e.g. no C++ compiler) or the program disagrees with the model.
    """
    device = torch.device(device)
    model = exportable(model).to(device)
    threads = thread_mode(num_threads)
    key = compile_key(model, device, threads)
    folder = compiled_cache_dir()
    path, record = folder / f"{key}.pt2", folder / f"{key}.sha256"
    if path.exists() and record.exists():
        if file_sha256(path) == record.read_text().strip():
            return CompiledModel(path, device, shares_reverse_edges(model))
        warnings.warn(
            f"The compiled model {path} does not match its recorded sha256 (changed or "
            "truncated since it was written); compiling it again.",
            stacklevel=3,
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CompileError(
            f"Cannot keep compiled models in {folder} ({error}); set ALLEGRO_ASE_CACHE to a "
            "writable folder, or use compile=False."
        ) from error
    temporary = folder / f"{key}.{os.getpid()}.partial.pt2"
    started = time.perf_counter()
    logger.info(
        "Compiling %s for %s (once per model; cached in %s)", model.config.label, device, folder
    )
    inputs = example_inputs(model)
    names = INPUTS + PAIR_INPUTS * shares_reverse_edges(model)
    # serial: cpp.threads 1 (plain loops); parallel: OpenMP loops sized at run time
    threading = {"cpp.threads": 1} if threads == "serial" else {"cpp.dynamic_threads": True}
    try:
        program = trace_and_export(EnergyAndEdgeGradients(model), inputs, names)
        with torch._inductor.config.patch(threading):
            torch._inductor.aoti_compile_and_package(program, package_path=str(temporary))
    except Exception as error:
        temporary.unlink(missing_ok=True)
        raise CompileError(
            f"Compiling the {model.config.label} model for {device} failed "
            f"({type(error).__name__}: {first_line(error)}). "
            "AOTInductor needs a working C++ compiler (g++ or clang++) on a CPU; use "
            "compile=False to run the model uncompiled."
        ) from error
    compiled = CompiledModel(temporary, device, shares_reverse_edges(model))
    check_compiled(compiled, model, inputs, temporary.name)
    os.replace(temporary, path)
    record.write_text(file_sha256(path) + "\n")
    logger.info("Compiled in %.0f s: %s", time.perf_counter() - started, path)
    return CompiledModel(path, device, shares_reverse_edges(model))


def first_line(error: Exception) -> str:
    """Return the first line of an error's message (compiler errors run to pages)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def example_inputs(model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    """Edge vectors, edge index, types (and pairs) of :func:`example_graph`, on the model's device."""
    graph = example_graph(model).to(model.cutoff_matrix.device)
    edge_vec = edge_vectors(graph.pos, graph.cell, graph.edge_index, graph.cell_shifts)
    pairs = graph_pairs(model, graph.edge_index, graph.cell_shifts) or ()
    return edge_vec.detach(), graph.edge_index, graph.atom_types, *pairs


def check_compiled(
    compiled: CompiledModel, model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], name: str
) -> None:
    """Refuse a compiled program whose outputs differ from the eager model's."""
    atol = CHECK_ATOL[model.config.model_dtype]
    with torch.enable_grad():
        expected = energies_and_edge_gradients(model, *inputs)
    for what, want, have in zip(
        ("energies", "edge gradients"), expected, compiled(*inputs), strict=True
    ):
        error = (want.detach() - have).abs().nan_to_num(nan=float("inf")).max().item()
        if error > atol:
            raise CompileError(
                f"The compiled program {name} differs from the eager model in its {what} by "
                f"{error:.3g} (tolerance {atol:g} for {model.config.model_dtype}); use "
                "compile=False, and please report this with your torch version."
            )
