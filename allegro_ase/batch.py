"""Many structures in one model call: a disjoint batch graph and its per-structure outputs.

The models see only edge vectors, edge indices and atom types, so a batch is the union of the
structures' graphs: atoms and edges concatenated, neighbour indices offset, each structure's
edge vectors computed with its own cell. One forward and one backward pass give every atom's
energy, force and virial; a structure's energy and virial are the sums over its atoms (the
per-atom virials sum exactly to the virial), so batched results equal serial ones to rounding.
:meth:`allegro_ase.AllegroCalculator.calculate_batch` is the ASE-level entry point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .graph import AtomicGraph, edge_vectors, reverse_edge_pairs


@dataclass(frozen=True)
class GraphBatch:
    """The disjoint union of several structures' graphs.

    Attributes
    ----------
    edge_vec : torch.Tensor
        (E, 3) float64 edge vectors, Å, of all structures.
    edge_index : torch.Tensor
        (2, E) int64 centre and neighbour indices into the concatenated atoms.
    atom_types : torch.Tensor
        (N,) int64 type indices of all atoms.
    num_atoms : tuple of int
        Atoms of each structure, in order (they sum to N).
    pairs : tuple of torch.Tensor or None
        (P,) ``pair_first`` and (E,) ``pair_of_edge`` of
        :func:`~allegro_ase.graph.reverse_edge_pairs`, when asked for.
    """

    edge_vec: torch.Tensor
    edge_index: torch.Tensor
    atom_types: torch.Tensor
    num_atoms: tuple[int, ...]
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None

    def to(self, device: torch.device | str) -> GraphBatch:
        """Return the batch on ``device``."""
        return GraphBatch(
            self.edge_vec.to(device),
            self.edge_index.to(device),
            self.atom_types.to(device),
            self.num_atoms,
            None if self.pairs is None else tuple(x.to(device) for x in self.pairs),
        )


def join_graphs(graphs: Sequence[AtomicGraph], pairs: bool = False) -> GraphBatch:
    """One :class:`GraphBatch` from structures' graphs (on the same device).

    ``pairs``: also group every edge with its reverse (for models that share reverse edges).
    """
    if len(graphs) == 1:  # one structure (every MD step): its tensors as they are, no copies
        (g,) = graphs
        edge_index, cell_shifts = g.edge_index, g.cell_shifts
        edge_vec = edge_vectors(g.pos, g.cell, edge_index, cell_shifts)
        atom_types = g.atom_types
    else:
        offsets = torch.cumsum(torch.tensor([0] + [g.num_atoms for g in graphs[:-1]]), 0)
        edge_vec = torch.cat(
            [edge_vectors(g.pos, g.cell, g.edge_index, g.cell_shifts) for g in graphs]
        )
        edge_index = torch.cat(
            [g.edge_index + offset for g, offset in zip(graphs, offsets.tolist(), strict=True)],
            dim=1,
        )
        cell_shifts = torch.cat([g.cell_shifts for g in graphs])
        atom_types = torch.cat([g.atom_types for g in graphs])
    return GraphBatch(
        edge_vec=edge_vec,
        edge_index=edge_index,
        atom_types=atom_types,
        num_atoms=tuple(g.num_atoms for g in graphs),
        pairs=reverse_edge_pairs(edge_index, cell_shifts) if pairs else None,
    )
