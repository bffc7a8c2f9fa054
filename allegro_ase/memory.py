"""Memory of a model call, estimated before it is made, and a clear error when it cannot fit.

A call's memory is dominated by the tensors autograd keeps for the backward pass, which grow
linearly with the number of edges E and of atoms N. :func:`measure_call_memory` measures them
for a given model on three small synthetic graphs (tensors saved for backward, counted through
``torch.autograd.graph.saved_tensors_hooks``) and fits ``bytes = per_edge * E + per_atom * N``;
the peak of a call is about :data:`PEAK_FACTOR` times that (gradients of the same size are alive
during the backward pass). The neighbour list costs about :data:`NEIGHBOR_LIST_BYTES_PER_EDGE`
before the model runs. :func:`available_bytes` reads what the device can still give: free GPU
memory, or on Linux ``MemAvailable`` capped by the cgroup limit of the process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# neighbour-list search and graph, per directed edge: matscipy's i, j, S and distance arrays and
# their sort, the int64 edge_index, float64 cell_shifts and edge vectors (about 150 B) and slack
NEIGHBOR_LIST_BYTES_PER_EDGE = 300
# peak of forward + backward over the saved tensors (measured 1.3-1.9 on CPU, see benchmarks)
PEAK_FACTOR = 2.0
GIB = 1024.0**3
# below this many edges per call memory is not checked (a few hundred MB even for the largest
# published models), so small systems never pay for measuring the model
MEMORY_CHECK_EDGES = 20_000


class InsufficientMemoryError(MemoryError):
    """A call would need more memory than the device has; the message says what to do."""


@dataclass(frozen=True)
class CallMemory:
    """Bytes kept for the backward pass of one model call, per edge and per atom."""

    per_edge: float
    per_atom: float

    def peak_bytes(self, num_atoms: int, num_edges: int) -> float:
        """Estimated peak bytes of a forward + backward pass over ``num_edges`` edges."""
        return PEAK_FACTOR * (self.per_edge * num_edges + self.per_atom * num_atoms)

    def max_edges(self, num_atoms: int, budget: float) -> int:
        """Return the most edges one pass may have within ``budget`` bytes (at least 1)."""
        spare = budget / PEAK_FACTOR - self.per_atom * num_atoms
        return max(1, int(spare / self.per_edge))


class MemoryBudget:
    """What one call of ``model`` may allocate on ``device``, and how a call stays within it.

    Parameters
    ----------
    model : torch.nn.Module
        The energy model (its saved-tensor bytes are measured on first need, once).
    device : torch.device
        Where it runs.
    limit : float or None
        Bytes one call may use; None: what the device reports free at each call.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, limit: float | None):
        self.model, self.device, self.limit = model, device, limit
        self._call_memory: CallMemory | None = None

    def budget(self) -> float:
        """Bytes one call may use now."""
        return self.limit if self.limit is not None else available_bytes(self.device)

    def call_memory(self) -> CallMemory:
        """Return the model's measured bytes per edge and per atom (measured once)."""
        if self._call_memory is None:
            self._call_memory = measure_call_memory(self.model, self.device)
        return self._call_memory

    def checks(self, num_edges: float) -> bool:
        """Whether a call of ``num_edges`` edges is checked (large, or a limit was set)."""
        return num_edges >= MEMORY_CHECK_EDGES or self.limit is not None

    def check_neighbor_list(self, num_atoms: int, volume: float) -> None:
        """Refuse, before the search, a periodic structure (``volume`` Å³) that cannot fit."""
        edges = estimated_num_edges(num_atoms, volume, self.model.r_max)
        if not self.checks(edges):
            return
        budget, local = self.budget(), self.model.strictly_local
        needed = edges * NEIGHBOR_LIST_BYTES_PER_EDGE
        what = "The neighbour list"
        if not local:  # it cannot be evaluated in blocks: the whole call must fit too
            needed += self.call_memory().peak_bytes(num_atoms, int(edges))
            what = "The neighbour list and model call"
        if needed > budget:
            raise InsufficientMemoryError(
                too_large_message(what, num_atoms, edges, needed, budget, local)
            )

    def groups(self, sizes: list[tuple[int, int]]) -> list[list[int]]:
        """Consecutive structures, given as (atoms, edges), joined into batches that fit."""
        if not self.checks(sum(edges for _, edges in sizes)):
            return [list(range(len(sizes)))]
        budget, call_memory = self.budget(), self.call_memory()
        groups: list[list[int]] = [[]]
        total_atoms = total_edges = 0
        for k, (num_atoms, num_edges) in enumerate(sizes):
            total_atoms, total_edges = total_atoms + num_atoms, total_edges + num_edges
            if groups[-1] and call_memory.peak_bytes(total_atoms, total_edges) > budget:
                groups.append([])
                total_atoms, total_edges = num_atoms, num_edges
            groups[-1].append(k)
        return groups

    def max_edges(self, num_atoms: int, num_edges: int, block_edges: int | None) -> int | None:
        """Edges per block of centre atoms for this call (None: one pass), or refuse it."""
        max_edges = block_edges if block_edges is not None and num_edges > 2 * block_edges else None
        if not self.checks(num_edges):
            return max_edges
        budget, call_memory = self.budget(), self.call_memory()
        needed = call_memory.peak_bytes(num_atoms, max_edges or num_edges)
        if needed <= budget:
            return max_edges
        if not self.model.strictly_local:
            raise InsufficientMemoryError(
                too_large_message("A model call", num_atoms, num_edges, needed, budget, False)
            )
        return min(call_memory.max_edges(num_atoms, budget), max_edges or num_edges)


def measure_call_memory(model: torch.nn.Module, device: torch.device) -> CallMemory:
    """Measure the saved-tensor bytes of ``model`` per edge and per atom on ``device``.

    Three synthetic graphs (16 atoms x 8 neighbours, 16 x 32 and 32 x 8, random directions,
    lengths within the cutoff) are evaluated with a backward pass; the model is not changed.
    """
    (small, more_edges, more_atoms) = (
        _saved_bytes(model, device, atoms, neighbors)
        for atoms, neighbors in ((16, 8), (16, 32), (32, 8))
    )
    per_edge = (more_edges - small) / (16 * 24)
    per_atom = (more_atoms - small - per_edge * 16 * 8) / 16
    return CallMemory(per_edge=max(per_edge, 1.0), per_atom=max(per_atom, 0.0))


def _saved_bytes(model: torch.nn.Module, device: torch.device, atoms: int, neighbors: int) -> int:
    generator = np.random.default_rng(0)
    center = np.repeat(np.arange(atoms), neighbors)
    neighbor = (center + 1 + np.tile(np.arange(neighbors), atoms)) % atoms
    directions = generator.normal(size=(center.size, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    lengths = generator.uniform(0.4, 0.9, size=(center.size, 1)) * model.r_max
    edge_vec = torch.tensor(directions * lengths, device=device).requires_grad_(True)
    edge_index = torch.tensor(np.stack([center, neighbor]), device=device)
    atom_types = torch.arange(atoms, device=device) % len(model.type_names)
    storages: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        energy = model(edge_vec, edge_index, atom_types).sum()
    torch.autograd.grad(energy, edge_vec)
    return sum(storages.values())


def available_bytes(device: torch.device) -> float:
    """Bytes the device can still allocate (math.inf when the system does not say)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(
            free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        )
    available = _meminfo_available()
    cgroup_room = _cgroup_room()
    return min(available, cgroup_room)


def _meminfo_available() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    return math.inf


def _cgroup_room() -> float:
    """Limit minus usage of the process' cgroup (v2 or v1), math.inf when unlimited or unknown."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = float(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or float(limit) >= 2.0**60:
            return math.inf
        return float(limit) - usage
    return math.inf


def estimated_num_edges(num_atoms: int, volume: float, r_max: float) -> float:
    """Directed edges of a homogeneous structure: N * (N / V) * 4/3 pi r_max^3 (V in Å³)."""
    return num_atoms * (num_atoms / volume) * (4.0 / 3.0) * math.pi * r_max**3


def too_large_message(
    what: str, num_atoms: int, num_edges: float, needed: float, budget: float, chunkable: bool
) -> str:
    """Say that ``what`` would need ``needed`` bytes but ``budget`` are free, and what to do."""
    remedies = [
        "use float32 weights (dtype='float32') if the model runs in float64",
        "split the system or use fewer atoms",
        "run on a device with more memory (a GPU: device='cuda')",
    ]
    if not chunkable:
        remedies.append(
            "use an Allegro model, which the calculator evaluates in blocks of atoms when a "
            "structure does not fit in one pass"
        )
    return (
        f"{what} of {num_atoms} atoms and about {num_edges:.3g} edges would need about "
        f"{needed / GIB:.3g} GiB, but only {budget / GIB:.3g} GiB are available. To go on: "
        + "; ".join(remedies)
        + ". (memory_limit= sets the budget in GiB.)"
    )
