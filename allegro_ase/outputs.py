r"""Energy derivatives shared by every model: forces, virial, stress and per-atom virials.

All models here see positions only through the edge vectors :math:`r_{ij}`, so one backward
pass gives the edge gradients :math:`g_{ij} = \partial E / \partial r_{ij}`, from which

.. math::
    F_k = -\frac{\partial E}{\partial x_k} = \sum_{(ij):\, i = k} g_{ij} - \sum_{(ij):\, j = k} g_{ij},
    \qquad
    W = -\operatorname{sym} \sum_{ij} r_{ij} \otimes g_{ij}.

The virial W is minus the derivative of E with respect to a symmetric strain
:math:`\varepsilon` applied to positions and cell (:math:`x \to x (1 + \varepsilon)`), so the
ASE stress is :math:`\sigma = -W / V` (positive = tensile). Each edge's share of W is split
equally between its two atoms, so per-atom virials sum exactly to W.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .graph import AtomicGraph, edge_vectors, reverse_edge_pairs

# (edge_vec (E, 3), edge_index (2, E), atom_types (N,)[, pair_first (P,), pair_of_edge (E,)])
# -> ((N,) energies, (E, 3) dE/dr_ij): energies_and_edge_gradients bound to a model, or its
# compiled program (allegro_ase.compile)
EdgeFunction = Callable[..., tuple[torch.Tensor, torch.Tensor]]
# (pair_first (P,), pair_of_edge (E,)) of graph.reverse_edge_pairs, for models that share them
EdgePairs = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Outputs:
    """Model outputs in eV and Å, float64.

    Attributes
    ----------
    energy : torch.Tensor
        () total energy, eV.
    energies : torch.Tensor
        (N,) per-atom energies, eV.
    forces : torch.Tensor
        (N, 3) forces, eV/Å.
    virial : torch.Tensor
        (3, 3) symmetric virial W (eV); ASE stress is -W / volume.
    atom_virials : torch.Tensor
        (N, 3, 3) per-atom virials, summing to ``virial``.
    """

    energy: torch.Tensor
    energies: torch.Tensor
    forces: torch.Tensor
    virial: torch.Tensor
    atom_virials: torch.Tensor


def compute_outputs(
    model: torch.nn.Module,
    graph: AtomicGraph,
    create_graph: bool = False,
    max_edges: int | None = None,
) -> Outputs:
    """Evaluate ``model`` on ``graph`` and differentiate its energy once.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (edge_vec (E, 3), edge_index (2, E), atom_types (N,)) to (N,) float64 energies.
    graph : AtomicGraph
        The structure, on the model's device.
    create_graph : bool
        Keep the graph of the derivatives (training on forces or stress).
    max_edges : int or None
        Evaluate in blocks of centre atoms with at most this many edges each
        (:func:`chunked_edge_outputs`); None evaluates all edges at once.

    Returns
    -------
    Outputs
        Energy, per-atom energies, forces, virial and per-atom virials.
    """
    edge_vec = edge_vectors(graph.pos, graph.cell, graph.edge_index, graph.cell_shifts)
    if max_edges is not None and graph.num_edges > max_edges:
        return chunked_edge_outputs(model, edge_vec, graph.edge_index, graph.atom_types, max_edges)
    pairs = graph_pairs(model, graph.edge_index, graph.cell_shifts)
    return edge_outputs(
        model, edge_vec, graph.edge_index, graph.atom_types, create_graph, pairs=pairs
    )


def shares_reverse_edges(model: torch.nn.Module) -> bool:
    """Whether ``model`` takes reverse-edge pairs (``EnergyModel.shares_reverse_edges``)."""
    return bool(getattr(model, "shares_reverse_edges", False))


def graph_pairs(
    model: torch.nn.Module, edge_index: torch.Tensor, cell_shifts: torch.Tensor
) -> EdgePairs | None:
    """Return the reverse-edge pairs of a graph for a model that shares them, else None."""
    if not shares_reverse_edges(model):
        return None
    return reverse_edge_pairs(edge_index, cell_shifts)


def edge_outputs(
    model: torch.nn.Module,
    edge_vec: torch.Tensor,
    edge_index: torch.Tensor,
    atom_types: torch.Tensor,
    create_graph: bool = False,
    evaluate: EdgeFunction | None = None,
    pairs: EdgePairs | None = None,
) -> Outputs:
    """:func:`compute_outputs` from edge vectors: one forward and one backward pass.

    Parameters
    ----------
    model : torch.nn.Module
        The energy model.
    edge_vec : torch.Tensor
        (E, 3) float64 edge vectors r_ij, Å (of one structure, or of a disjoint batch).
    edge_index : torch.Tensor
        (2, E) centre and neighbour indices.
    atom_types : torch.Tensor
        (N,) type indices.
    create_graph : bool
        Keep the graph of the derivatives.
    evaluate : EdgeFunction or None
        Computes energies and edge gradients instead of ``model`` (its compiled program);
        not with ``create_graph``.
    pairs : EdgePairs or None
        The reverse-edge pairs (:func:`graph_pairs`) of a model that shares them.
    """
    num_atoms = atom_types.shape[0]
    pairs = pairs or ()
    if evaluate is not None:
        energies, edge_grad = evaluate(edge_vec, edge_index, atom_types, *pairs)
    else:
        edge_vec = edge_vec.detach().requires_grad_(True)
        energies = model(edge_vec, edge_index, atom_types, *pairs)
        edge_grad = edge_gradients(energies.sum(), edge_vec, create_graph)
    forces = forces_from_edge_gradients(edge_grad, edge_index, num_atoms)
    edge_virial = edge_virials(edge_vec if create_graph else edge_vec.detach(), edge_grad)
    atom_virials = atom_virials_from_edges(edge_virial, edge_index, num_atoms)
    return Outputs(
        energy=energies.sum(),
        energies=energies,
        forces=forces,
        virial=edge_virial.sum(0),
        atom_virials=atom_virials,
    )


def energies_and_edge_gradients(
    model: torch.nn.Module,
    edge_vec: torch.Tensor,
    edge_index: torch.Tensor,
    atom_types: torch.Tensor,
    *pairs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) per-atom energies (eV) and (E, 3) gradient of their sum by ``edge_vec`` (eV/Å).

    ``pairs``: optional ``pair_first``, ``pair_of_edge`` for a model that shares reverse edges.
    """
    edge_vec = edge_vec.detach().requires_grad_(True)
    energies = model(edge_vec, edge_index, atom_types, *pairs)
    return energies.detach(), edge_gradients(energies.sum(), edge_vec)


def chunked_edge_outputs(
    model: torch.nn.Module,
    edge_vec: torch.Tensor,
    edge_index: torch.Tensor,
    atom_types: torch.Tensor,
    max_edges: int,
    evaluate: EdgeFunction | None = None,
) -> Outputs:
    """:func:`edge_outputs` in blocks of consecutive centre atoms, each with <= ``max_edges`` edges.

    Exact for strictly local models (``model.strictly_local``, e.g. Allegro), whose energy of
    atom i depends only on the edges centred on i (their vectors and the types at both ends):
    each block is evaluated as a small graph of its centre atoms plus one stand-in atom per
    type for the neighbours, its energies are differentiated with respect to its own edges,
    and forces and virials are summed over blocks. Time and memory follow the block, not the
    structure. A centre with more edges than ``max_edges`` forms a block of its own.
    Derivatives are not kept (no ``create_graph``). ``evaluate`` (the model's compiled
    program) computes each block's energies and edge gradients instead of ``model``.
    """
    if not getattr(model, "strictly_local", False):
        raise ValueError(
            f"{type(model).__name__} passes messages between atoms, so its energies cannot be "
            "evaluated in blocks of centre atoms; evaluate it in one pass (fewer atoms, "
            "float32, or a device with more memory)."
        )
    if evaluate is None:
        evaluate = functools.partial(energies_and_edge_gradients, model)
    num_atoms, num_types = atom_types.shape[0], len(model.type_names)
    center = edge_index[0]
    order = torch.argsort(center, stable=True)
    ends = torch.cumsum(torch.bincount(center, minlength=num_atoms), 0).tolist()
    dtype, device = edge_vec.dtype, edge_vec.device
    stand_in_types = torch.arange(num_types, device=device)
    energies = torch.zeros(num_atoms, dtype=dtype, device=device)
    forces = torch.zeros(num_atoms, 3, dtype=dtype, device=device)
    atom_virials = torch.zeros(num_atoms, 3, 3, dtype=dtype, device=device)
    first_atom, first_edge = 0, 0
    while first_atom < num_atoms:
        last_atom = first_atom + 1  # one past the block's last centre
        while last_atom < num_atoms and ends[last_atom] - first_edge <= max_edges:
            last_atom += 1
        block = order[first_edge : ends[last_atom - 1]]
        block_index = edge_index[:, block]
        size = last_atom - first_atom
        # the block's graph: its centres, then one stand-in atom per type for every neighbour
        local_index = torch.stack([block_index[0] - first_atom, size + atom_types[block_index[1]]])
        local_types = torch.cat([atom_types[first_atom:last_atom], stand_in_types])
        block_vec = edge_vec[block].detach()
        # the stand-ins are centres of no edge: their energies do not depend on block_vec
        block_energies, edge_grad = evaluate(block_vec, local_index, local_types)
        forces += forces_from_edge_gradients(edge_grad, block_index, num_atoms)
        edge_virial = edge_virials(block_vec, edge_grad)
        atom_virials += atom_virials_from_edges(edge_virial, block_index, num_atoms)
        energies[first_atom:last_atom] = block_energies[:size]
        first_atom, first_edge = last_atom, ends[last_atom - 1]
    return Outputs(
        energy=energies.sum(),
        energies=energies,
        forces=forces,
        virial=atom_virials.sum(0),
        atom_virials=atom_virials,
    )


def edge_gradients(
    energy: torch.Tensor, edge_vec: torch.Tensor, create_graph: bool = False
) -> torch.Tensor:
    """(E, 3) gradient of a scalar ``energy`` (eV) with respect to ``edge_vec`` (Å)."""
    if edge_vec.shape[0] == 0:
        return torch.zeros_like(edge_vec)
    (edge_grad,) = torch.autograd.grad(energy, edge_vec, create_graph=create_graph)
    return edge_grad


def forces_from_edge_gradients(
    edge_grad: torch.Tensor, edge_index: torch.Tensor, num_atoms: int
) -> torch.Tensor:
    """(N, 3) forces in eV/Å from (E, 3) edge gradients: +g on the centre, -g on the neighbour."""
    center, neighbor = edge_index
    forces = torch.zeros(num_atoms, 3, dtype=edge_grad.dtype, device=edge_grad.device)
    return forces.index_add(0, center, edge_grad).index_add(0, neighbor, -edge_grad)


def atom_virials_from_edges(
    edge_virial: torch.Tensor, edge_index: torch.Tensor, num_atoms: int
) -> torch.Tensor:
    """(N, 3, 3) per-atom virials: half of each edge's (E, 3, 3) virial to each of its atoms."""
    half = 0.5 * edge_virial
    center, neighbor = edge_index
    atom_virials = torch.zeros(num_atoms, 3, 3, dtype=half.dtype, device=half.device)
    return atom_virials.index_add(0, center, half).index_add(0, neighbor, half)


def edge_virials(edge_vec: torch.Tensor, edge_grad: torch.Tensor) -> torch.Tensor:
    """(E, 3, 3) symmetric per-edge virials -sym(r_ij ⊗ g_ij) in eV; they sum to W."""
    virial = -edge_vec.unsqueeze(-1) * edge_grad.unsqueeze(-2)
    return 0.5 * (virial + virial.transpose(-1, -2))
