"""Channelwise Clebsch-Gordan tensor product of edge tensors with the centre's environment."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from e3nn import o3


@dataclass(frozen=True)
class CenterGroups:
    """Slots of edges in a dense (N, width) layout grouped by centre atom.

    Attributes
    ----------
    index : torch.Tensor
        (E,) int64 slot ``center * width + rank`` of each edge, where rank counts the earlier
        edges of the same centre.
    num_atoms : int
        Number of atoms N.
    width : int
        Largest number of edges of any centre (at least 1).
    """

    index: torch.Tensor
    num_atoms: int
    width: int


def group_by_center(edge_center: torch.Tensor, num_atoms: int) -> CenterGroups:
    """Compute :class:`CenterGroups` for (E,) centre indices; edges need not be sorted."""
    counts = torch.bincount(edge_center, minlength=num_atoms)
    width = max(int(counts.max()), 1) if edge_center.numel() else 1
    order = torch.argsort(edge_center, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    ranks_sorted = torch.arange(edge_center.numel(), device=edge_center.device)
    ranks_sorted = ranks_sorted - starts[edge_center[order]]
    ranks = torch.empty_like(ranks_sorted).scatter_(0, order, ranks_sorted)
    return CenterGroups(edge_center * width + ranks, num_atoms, width)


def tensor_product_paths(
    irreps_in1: o3.Irreps, irreps_in2: o3.Irreps, irreps_out: o3.Irreps
) -> list[tuple[int, int, int]]:
    """All allowed paths (i_in1, i_in2, i_out), ordered by output, then input 1, then input 2."""
    return [
        (i1, i2, i_out)
        for i_out, (_, ir_out) in enumerate(irreps_out)
        for i1, (_, ir1) in enumerate(irreps_in1)
        for i2, (_, ir2) in enumerate(irreps_in2)
        if ir_out in ir1 * ir2
    ]


class ChannelwiseTensorProduct(torch.nn.Module):
    r"""Weighted channelwise tensor product :math:`V' = V \otimes \Gamma`.

    For edge ij with centre i, channel u and output component k:

    .. math::
        V'_{ij,uk} = \sum_{p} w_{up} \sum_{a b} C^{p}_{abk} \, V_{ij,ua} \, \Gamma_{i,ub}

    where :math:`C^p` is the Wigner 3j symbol of path p scaled by :math:`\sqrt{2 l_{out} + 1}`
    ("component" normalisation), and the weights are shared across channels
    (:math:`w_p`) when ``path_channel_coupling`` is False.

    The Clebsch-Gordan coefficients and weights are first contracted with the environment of
    each *atom* (N << E) into a (u, dim1, dim_out) matrix per atom; the edges of each centre,
    laid out densely, are then multiplied by that matrix in one batched matmul. The cost per
    edge is u x dim1 x dim_out multiply-adds, nothing of size E x dim1 x dim_out is stored, and
    no Python loop runs over paths, edges or atoms.

    Without ``groups`` each edge gathers its centre's matrix instead (E x u x dim1 x dim_out
    temporaries, but every shape follows from N and E alone, which ``torch.export`` needs):
    the same products and sums, equal to the grouped path to rounding (tests/test_export.py).

    Parameters
    ----------
    irreps_in1, irreps_in2, irreps_out : e3nn.o3.Irreps
        Irreps of the edge tensor, the environment and the output, multiplicity 1 each.
    num_channels : int
        Number of channels u.
    path_channel_coupling : bool
        Weights of shape (u, num_paths) if True, (num_paths,) otherwise.
    dtype, generator
        Dtype of weights and coefficients, and source of the initial weights
        (uniform on [-sqrt 3, sqrt 3]).
    """

    def __init__(
        self,
        irreps_in1: o3.Irreps,
        irreps_in2: o3.Irreps,
        irreps_out: o3.Irreps,
        num_channels: int,
        path_channel_coupling: bool = True,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.irreps_in1, self.irreps_in2, self.irreps_out = irreps_in1, irreps_in2, irreps_out
        paths = tensor_product_paths(irreps_in1, irreps_in2, irreps_out)
        if not paths:
            raise ValueError(
                f"No tensor-product path from {irreps_in1} x {irreps_in2} to {irreps_out}."
            )
        self.num_paths = len(paths)
        self.path_channel_coupling = path_channel_coupling
        coefficients = torch.zeros(
            len(paths), irreps_in1.dim, irreps_in2.dim, irreps_out.dim, dtype=torch.float64
        )
        slices1, slices2, slices_out = irreps_in1.slices(), irreps_in2.slices(), irreps_out.slices()
        for p, (i1, i2, i_out) in enumerate(paths):
            l1, l2, l_out = irreps_in1[i1].ir.l, irreps_in2[i2].ir.l, irreps_out[i_out].ir.l
            w3j = o3.wigner_3j(l1, l2, l_out, dtype=torch.float64)
            coefficients[p, slices1[i1], slices2[i2], slices_out[i_out]] = w3j * math.sqrt(
                2 * l_out + 1
            )
        self.register_buffer("coefficients", coefficients.to(dtype))
        shape = (num_channels, len(paths)) if path_channel_coupling else (len(paths),)
        weights = torch.empty(shape, dtype=dtype)
        torch.nn.init.uniform_(weights, -math.sqrt(3), math.sqrt(3), generator=generator)
        self.weights = torch.nn.Parameter(weights)

    def forward(
        self,
        edge_tensor: torch.Tensor,
        env: torch.Tensor,
        center: torch.Tensor,
        groups: CenterGroups | None = None,
    ) -> torch.Tensor:
        """Contract edge tensors with the environment of their centre atom.

        Parameters
        ----------
        edge_tensor : torch.Tensor
            (E, u, dim1) edge features V.
        env : torch.Tensor
            (N, u, dim2) per-atom environment Gamma.
        center : torch.Tensor
            (E,) int64 centre atom of each edge.
        groups : CenterGroups or None
            Slots of the edges grouped by centre (:func:`group_by_center` of ``center``);
            None gathers per edge instead (shapes fixed by N and E, for export).

        Returns
        -------
        torch.Tensor
            (E, u, dim_out) output features.
        """
        if self.path_channel_coupling:
            weighted = torch.einsum("up,pabk->uabk", self.weights, self.coefficients)
            per_atom = torch.einsum("nub,uabk->nuak", env, weighted)
        else:
            weighted = torch.einsum("p,pabk->abk", self.weights, self.coefficients)
            per_atom = torch.einsum("nub,abk->nuak", env, weighted)
        if groups is None:
            per_edge = per_atom.index_select(0, center)
            return (edge_tensor.unsqueeze(-1) * per_edge).sum(-2)
        num_atoms, width = groups.num_atoms, groups.width
        channels, dim1 = edge_tensor.shape[1:]
        padded = edge_tensor.new_zeros(num_atoms * width, channels, dim1)
        padded = padded.index_copy(0, groups.index, edge_tensor)
        padded = padded.view(num_atoms, width, channels, dim1).transpose(1, 2)
        out = torch.matmul(padded, per_atom).transpose(1, 2)
        return out.reshape(num_atoms * width, channels, -1).index_select(0, groups.index)
