"""The atomic graph: the one container passed from the neighbour list to a model.

Vocabulary (shapes and units of every field used across the package):

=============== ============ ======= ==========================================================
name            shape        dtype   meaning
=============== ============ ======= ==========================================================
``pos``         (N, 3)       float64 Cartesian positions, Å
``atom_types``  (N,)         int64   index into the model's ``type_names``
``cell``        (3, 3)       float64 lattice vectors as **rows** (ASE convention), Å
``pbc``         (3,)         bool    periodicity of each lattice direction
``edge_index``  (2, E)       int64   ``edge_index[0]`` is the **centre** atom i,
                                     ``edge_index[1]`` the neighbour j
``cell_shifts`` (E, 3)       float64 integer image counts S of the neighbour
``edge_vec``    (E, 3)       float64 r_ij = pos[j] - pos[i] + S @ cell, Å
=============== ============ ======= ==========================================================

The neighbour list is *full*: every pair appears as (i, j) and (j, i).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AtomicGraph:
    """Positions, types and edges of one structure, as torch tensors.

    Attributes
    ----------
    pos : torch.Tensor
        (N, 3) float64 positions in Å.
    atom_types : torch.Tensor
        (N,) int64 type indices.
    cell : torch.Tensor
        (3, 3) float64 cell, rows are lattice vectors (Å). Rows of non-periodic
        directions are never used because their ``cell_shifts`` are zero.
    edge_index : torch.Tensor
        (2, E) int64; row 0 is the centre atom, row 1 the neighbour.
    cell_shifts : torch.Tensor
        (E, 3) float64 integer image shifts of the neighbour.
    """

    pos: torch.Tensor
    atom_types: torch.Tensor
    cell: torch.Tensor
    edge_index: torch.Tensor
    cell_shifts: torch.Tensor

    @property
    def num_atoms(self) -> int:
        """Number of atoms N."""
        return self.pos.shape[0]

    @property
    def num_edges(self) -> int:
        """Number of directed edges E."""
        return self.edge_index.shape[1]

    def to(self, device: torch.device | str) -> AtomicGraph:
        """Return the graph on ``device`` in two transfers (one float64, one int64 buffer)."""
        device = torch.device(device)
        if self.pos.device == device:
            return self
        n, e = self.num_atoms, self.num_edges
        floats = torch.cat(
            [self.pos.reshape(-1), self.cell.reshape(-1), self.cell_shifts.reshape(-1)]
        )
        ints = torch.cat([self.atom_types, self.edge_index.reshape(-1)])
        floats, ints = floats.to(device, non_blocking=True), ints.to(device, non_blocking=True)
        return AtomicGraph(
            pos=floats[: 3 * n].view(n, 3),
            atom_types=ints[:n],
            cell=floats[3 * n : 3 * n + 9].view(3, 3),
            edge_index=ints[n:].view(2, e),
            cell_shifts=floats[3 * n + 9 :].view(e, 3),
        )


def edge_vectors(
    pos: torch.Tensor, cell: torch.Tensor, edge_index: torch.Tensor, cell_shifts: torch.Tensor
) -> torch.Tensor:
    r"""Edge vectors :math:`r_{ij} = x_j - x_i + S_{ij} \cdot \mathrm{cell}`.

    Parameters
    ----------
    pos : torch.Tensor
        (N, 3) positions, Å.
    cell : torch.Tensor
        (3, 3) cell with lattice vectors as rows, Å.
    edge_index : torch.Tensor
        (2, E) centre and neighbour indices.
    cell_shifts : torch.Tensor
        (E, 3) integer image shifts (any float dtype).

    Returns
    -------
    torch.Tensor
        (E, 3) edge vectors in Å, dtype of ``pos``.
    """
    center, neighbor = edge_index
    return pos[neighbor] - pos[center] + cell_shifts.to(pos.dtype) @ cell.to(pos.dtype)


def reverse_edge_pairs(
    edge_index: torch.Tensor, cell_shifts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group each edge (i, j, S) with its reverse (j, i, -S): the two have the same length.

    A model whose per-edge radial terms depend only on the length and the unordered pair of
    types (NequIP's radial MLPs) computes them once per pair. An edge whose reverse is not in
    the list is a pair of its own, so any list is valid input.

    Parameters
    ----------
    edge_index : torch.Tensor
        (2, E) int64 centre and neighbour indices.
    cell_shifts : torch.Tensor
        (E, 3) integer image shifts (any dtype).

    Returns
    -------
    pair_first : torch.Tensor
        (P,) int64 the lower edge index of each pair, ascending (E/2 <= P <= E).
    pair_of_edge : torch.Tensor
        (E,) int64 the pair of each edge, an index into ``pair_first``.
    """
    num_edges, device = edge_index.shape[1], edge_index.device
    edges = torch.arange(num_edges, device=device)
    if num_edges == 0:
        return edges, edges
    shifts = cell_shifts.round().to(torch.int64)
    reach = int(shifts.abs().max())
    base = 2 * reach + 1
    num_atoms = int(edge_index.max()) + 1
    if num_atoms**2 * base**3 >= 2**62:  # the keys below would overflow int64
        return edges, edges
    center, neighbor = edge_index
    powers = torch.tensor([base**2, base, 1], device=device)
    key = (center * num_atoms + neighbor) * base**3 + (shifts + reach) @ powers
    reverse_key = (neighbor * num_atoms + center) * base**3 + (reach - shifts) @ powers
    order = torch.argsort(key)
    sorted_key = key[order]
    at = torch.searchsorted(sorted_key, reverse_key).clamp_(max=num_edges - 1)
    reverse = torch.where(sorted_key[at] == reverse_key, order[at], edges)
    first = torch.minimum(edges, reverse)
    is_first = first == edges
    pair_of_edge = (torch.cumsum(is_first, 0) - 1)[first]
    return edges[is_first], pair_of_edge
