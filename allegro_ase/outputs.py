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

from dataclasses import dataclass

import torch

from .graph import AtomicGraph, edge_vectors


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
    model: torch.nn.Module, graph: AtomicGraph, create_graph: bool = False
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

    Returns
    -------
    Outputs
        Energy, per-atom energies, forces, virial and per-atom virials.
    """
    edge_vec = edge_vectors(graph.pos, graph.cell, graph.edge_index, graph.cell_shifts)
    edge_vec = edge_vec.detach().requires_grad_(True)
    energies = model(edge_vec, graph.edge_index, graph.atom_types)
    energy = energies.sum()
    edge_grad = edge_gradients(energy, edge_vec, create_graph)
    forces = forces_from_edge_gradients(edge_grad, graph.edge_index, graph.num_atoms)
    edge_virial = edge_virials(edge_vec if create_graph else edge_vec.detach(), edge_grad)
    half = 0.5 * edge_virial
    center, neighbor = graph.edge_index
    atom_virials = torch.zeros(graph.num_atoms, 3, 3, dtype=edge_vec.dtype, device=edge_vec.device)
    atom_virials = atom_virials.index_add(0, center, half).index_add(0, neighbor, half)
    return Outputs(
        energy=energy,
        energies=energies,
        forces=forces,
        virial=edge_virial.sum(0),
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


def edge_virials(edge_vec: torch.Tensor, edge_grad: torch.Tensor) -> torch.Tensor:
    """(E, 3, 3) symmetric per-edge virials -sym(r_ij ⊗ g_ij) in eV; they sum to W."""
    virial = -edge_vec.unsqueeze(-1) * edge_grad.unsqueeze(-2)
    return 0.5 * (virial + virial.transpose(-1, -2))
