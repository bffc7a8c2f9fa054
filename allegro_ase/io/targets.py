"""Export targets: the reference framework's AOTInductor input/output contract, in eager mode.

A compiled model (``*.nequip.pt2``, see :mod:`allegro_ase.io.export`) is called with a list of
tensors and returns a list, in the orders that its metadata strings ``nequip_aoti_inputs`` and
``nequip_aoti_outputs`` name. LAMMPS' ``pair_style allegro`` / ``pair_style nequip``
(mir-group/pair_nequip_allegro) and nequip's ``NequIPCalculator.from_compiled_model`` read:

=================== ========= ======= ======================================================
field               shape     dtype   meaning
=================== ========= ======= ======================================================
``pos``             (N, 3)    float64 positions, Å; for ``pair_allegro`` local then ghosts
``edge_index``      (2, E)    int64   row 0 centre i (a local atom), row 1 neighbour j
``atom_types``      (N,)      int64   index into ``type_names``
``cell``            (1, 3, 3) float64 lattice vectors as rows, Å (not for ``pair_allegro``)
``edge_cell_shift`` (E, 3)    float64 image counts S: r_ij = pos[j] - pos[i] + S @ cell
``atomic_energy``   (N, 1)    float64 per-atom energies, eV (a ghost: its type's shift)
``total_energy``    (1, 1)    float64 sum of ``atomic_energy``, eV (``ase`` only)
``forces``          (N, 3)    float64 -dE/dpos, eV/Å; for ``pair_allegro`` also on ghosts
``virial``          (1, 3, 3) float64 W = -dE/d(strain), eV: LAMMPS P = W / V, ASE σ = -W / V
``stress``          (1, 3, 3) float64 ASE stress -W / V, eV/Å³ (NaN for a zero-volume cell)
=================== ========= ======= ======================================================

``pair_allegro`` gets no cell: LAMMPS gives each rank its local atoms plus ghost copies, edges
start at local atoms only, LAMMPS sums the local atoms' energies and sends the ghosts' forces
back to their owners (``newton on``). This suits strictly local models (Allegro) only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from ..conversion import SpeciesMap, atoms_to_graph
from ..graph import AtomicGraph, edge_vectors
from ..outputs import edge_gradients, edge_virials, forces_from_edge_gradients


@dataclass(frozen=True)
class ExportTarget:
    """Inputs and outputs (field names, in call order) of one export target."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def ghost_atoms(self) -> bool:
        """Whether periodicity comes as ghost atoms (no ``cell`` input)."""
        return "cell" not in self.inputs


_GRAPH = ("pos", "edge_index", "atom_types")
_LAMMPS = ("atomic_energy", "forces", "virial")
TARGETS = {
    "pair_allegro": ExportTarget(_GRAPH, _LAMMPS),
    "pair_nequip": ExportTarget((*_GRAPH, "cell", "edge_cell_shift"), _LAMMPS),
    "ase": ExportTarget(
        (*_GRAPH, "cell", "edge_cell_shift"), ("atomic_energy", "total_energy", "forces", "stress")
    ),
}


def get_target(name: str, model: torch.nn.Module | None = None) -> ExportTarget:
    """Return the :class:`ExportTarget` called ``name``, checking that ``model`` suits it."""
    if name not in TARGETS:
        raise ValueError(f"Unknown export target {name!r}; choose one of {list(TARGETS)}.")
    if name == "pair_allegro" and model is not None and model.config.label != "Allegro":
        raise ValueError(
            f"--target pair_allegro needs a strictly local model (Allegro), got "
            f"{model.config.label}: message passing would need the ghost atoms' own neighbours, "
            "which pair_allegro does not provide. Use --target pair_nequip (one MPI rank)."
        )
    return TARGETS[name]


class TargetModule(torch.nn.Module):
    """A model with a target's list-in, list-out interface (the eager twin of the export).

    Parameters
    ----------
    model : torch.nn.Module
        An energy model of this package, used as it is.
    target : str
        ``"pair_allegro"``, ``"pair_nequip"`` or ``"ase"``.
    """

    def __init__(self, model: torch.nn.Module, target: str):
        super().__init__()
        self.target = get_target(target, model)
        self.model = model

    def forward(
        self,
        pos: torch.Tensor,
        edge_index: torch.Tensor,
        atom_types: torch.Tensor,
        cell: torch.Tensor | None = None,
        edge_cell_shift: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Energies, forces and virial (or stress) of one structure; fields as in the module doc."""
        center, neighbor = edge_index[0], edge_index[1]
        if cell is None or edge_cell_shift is None:
            edge_vec = pos[neighbor] - pos[center]
        else:
            edge_vec = edge_vectors(pos, cell.view(3, 3), edge_index, edge_cell_shift)
        edge_vec = edge_vec.detach().requires_grad_(True)
        energies = self.model(edge_vec, edge_index, atom_types)
        edge_grad = edge_gradients(energies.sum(), edge_vec)
        energies = energies.detach()
        virial = edge_virials(edge_vec.detach(), edge_grad).sum(0).unsqueeze(0)
        fields = {
            "atomic_energy": energies.unsqueeze(-1),
            "forces": forces_from_edge_gradients(edge_grad, edge_index, pos.shape[0]),
            "virial": virial,
        }
        if "total_energy" in self.target.outputs:
            fields["total_energy"] = energies.sum().view(1, 1)
        if "stress" in self.target.outputs and cell is not None:
            a, b, c = cell.view(3, 3).unbind(0)
            volume = torch.dot(a, torch.linalg.cross(b, c)).abs()
            safe = torch.where(volume > 0, volume, torch.ones_like(volume))
            fields["stress"] = torch.where(volume > 0, -virial / safe, torch.nan)
        return tuple(fields[name] for name in self.target.outputs)


@dataclass(frozen=True)
class GhostAtoms:
    """A periodic graph rewritten with ghost atoms, as ``pair_allegro`` receives it.

    Attributes
    ----------
    pos : torch.Tensor
        (N + G, 3) positions of the N atoms, then of the G periodic images that are neighbours.
    atom_types : torch.Tensor
        (N + G,) type indices.
    edge_index : torch.Tensor
        (2, E) the graph's edges, neighbours outside the cell renumbered to their ghost.
    owner : torch.Tensor
        (N + G,) the atom each row of ``pos`` is a copy of (``arange(N)`` for the first N).
    """

    pos: torch.Tensor
    atom_types: torch.Tensor
    edge_index: torch.Tensor
    owner: torch.Tensor


def to_ghost_atoms(graph: AtomicGraph) -> GhostAtoms:
    """Turn each distinct (neighbour, image shift) outside the cell into one ghost atom."""
    n = graph.num_atoms
    center, neighbor = graph.edge_index
    outside = graph.cell_shifts.abs().sum(1) != 0
    keys = torch.cat([neighbor[outside, None].to(graph.cell_shifts), graph.cell_shifts[outside]], 1)
    images, slot = torch.unique(keys, dim=0, return_inverse=True)
    image_of = images[:, 0].long()
    ghost_pos = graph.pos[image_of] + images[:, 1:].to(graph.pos) @ graph.cell
    neighbor = neighbor.clone()
    neighbor[outside] = n + slot
    owner = torch.cat([torch.arange(n, device=image_of.device), image_of])
    return GhostAtoms(
        pos=torch.cat([graph.pos, ghost_pos]).contiguous(),
        atom_types=graph.atom_types[owner].contiguous(),
        edge_index=torch.stack([center, neighbor]).contiguous(),
        owner=owner,
    )


def target_inputs(graph: AtomicGraph, target: str) -> tuple[torch.Tensor, ...]:
    """Return a graph as ``target``'s contiguous input list (ghost atoms for ``pair_allegro``)."""
    if get_target(target).ghost_atoms:
        ghosts = to_ghost_atoms(graph)
        return ghosts.pos, ghosts.edge_index, ghosts.atom_types
    return (
        graph.pos.contiguous(),
        graph.edge_index.contiguous(),
        graph.atom_types.contiguous(),
        graph.cell.reshape(1, 3, 3).contiguous(),
        graph.cell_shifts.to(graph.pos.dtype).contiguous(),
    )


def example_graph(model: torch.nn.Module, seed: int = 0) -> AtomicGraph:
    """Build a jittered 3x3x3 periodic grid of every type (spacing r_max / 2) to trace with."""
    num_types, r_max = len(model.type_names), model.r_max
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    spacing = 0.5 * r_max
    pos = (grid + rng.uniform(-0.1, 0.1, grid.shape)) * spacing
    symbols = chemical_symbols[1 : num_types + 1]
    atoms = Atoms(
        numbers=[1 + k % num_types for k in range(len(grid))],
        positions=pos,
        cell=np.eye(3) * 3 * spacing,
        pbc=True,
    )
    species = SpeciesMap(model.type_names, dict(zip(symbols, model.type_names, strict=True)))
    return atoms_to_graph(atoms, species, r_max, model.cutoff_matrix.detach().cpu())
