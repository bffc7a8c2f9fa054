"""Two-body edge embeddings: species-pair scalars (Bessel or spline) and weighted harmonics."""

from __future__ import annotations

import math

import torch
from e3nn import o3

from .mlp import ScalarMLP


class TwoBodyEmbedding(torch.nn.Module):
    r"""Species-pair embedding times a linear map of the radial basis.

    .. math:: h_{ij} = [\mathrm{E_c}(T_i) \,\|\, \mathrm{E_n}(T_j)] \odot \mathrm{Linear}(e_{ij})

    Parameters
    ----------
    num_types : int
        Number of atom types T.
    num_radial : int
        Size of the radial basis e_ij.
    embed_dim : int
        Output size; must be even (half for the centre, half for the neighbour type).
    forward_weight_init : bool
        Weight normalisation of the linear map (see :class:`ScalarMLP`).
    dtype, generator
        Parameter dtype and source of initial values (standard normal embeddings).
    """

    def __init__(
        self,
        num_types: int,
        num_radial: int,
        embed_dim: int,
        forward_weight_init: bool = True,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if embed_dim % 2:
            raise ValueError(f"The two-body embedding size must be even, got {embed_dim}.")
        half = embed_dim // 2
        self.center_embed = torch.nn.Parameter(
            torch.randn(num_types, half, dtype=dtype, generator=generator)
        )
        self.neighbor_embed = torch.nn.Parameter(
            torch.randn(num_types, half, dtype=dtype, generator=generator)
        )
        self.basis_linear = ScalarMLP(
            num_radial,
            embed_dim,
            forward_weight_init=forward_weight_init,
            dtype=dtype,
            generator=generator,
        )

    def forward(self, radial: torch.Tensor, edge_types: torch.Tensor) -> torch.Tensor:
        """Embed (E, num_radial) radial features of edges with (2, E) centre/neighbour types.

        Returns
        -------
        torch.Tensor
            (E, embed_dim) edge scalars.
        """
        type_embed = torch.cat(
            (self.center_embed[edge_types[0]], self.neighbor_embed[edge_types[1]]), dim=-1
        )
        return type_embed * self.basis_linear(radial)


class WeightedChannels(torch.nn.Module):
    r"""Spread a single-channel tensor Y (E, dim) over u channels with per-irrep weights.

    .. math:: V_{e u m} = w_{e u l(m)} \, Y_{e m}

    Parameters
    ----------
    irreps : e3nn.o3.Irreps
        Irreps of Y, each of multiplicity 1.
    num_channels : int
        Number u of output channels.
    weight_individual_irreps : bool
        One weight per (channel, irrep) if True, one per channel otherwise.
    """

    def __init__(self, irreps: o3.Irreps, num_channels: int, weight_individual_irreps: bool = True):
        super().__init__()
        self.num_channels = num_channels
        self.num_irreps = len(irreps) if weight_individual_irreps else 1
        spread = torch.zeros(self.num_irreps, irreps.dim)
        for index, component in enumerate(irreps.slices()):
            spread[index if weight_individual_irreps else 0, component] = 1.0
        self.register_buffer("spread", spread, persistent=False)

    @property
    def weight_numel(self) -> int:
        """Number of weights per edge: u x (number of irreps, or 1)."""
        return self.num_channels * self.num_irreps

    def forward(self, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weight (E, dim) tensors with (E, u * num_irreps) weights; returns (E, u, dim)."""
        per_component = weights.reshape(-1, self.num_irreps) @ self.spread.to(weights.dtype)
        return y.unsqueeze(1) * per_component.view(y.shape[0], self.num_channels, y.shape[1])


class TwoBodySplineEmbedding(torch.nn.Module):
    r"""Per type-pair splines of the normalised edge length, in float64.

    .. math::
        h_{ij,c} = \sum_{s} W_{T_i T_j, c s} \, B_s(x_{ij}), \qquad
        B_s(x) = \tfrac14 \left[1 - \cos\!\left(\tfrac{2\pi}{\Delta}
                 (\mathrm{clamp}(x, a_s, a_s + \Delta) - a_s)\right)\right]^2

    with S bumps starting at :math:`a_s = (s - k) / S` for s = 0 ... S - 1, each spanning
    :math:`\Delta = (k + 1) / S` (k = ``spline_span``), so that every bump and its derivative
    vanish at and beyond x = 1. This is the reference ``TwoBodySplineScalarEmbed``; like it,
    the weights are float64 whatever the model dtype.

    Parameters
    ----------
    num_types : int
        Number of atom types T (the weights have one row per ordered pair, T x T).
    embed_dim : int
        Output size C.
    num_splines, spline_span : int
        S and k above.
    forward_weight_init : bool
        Initial weights uniform in +-sqrt(3 / k) (True) or +-sqrt(3 / C) (False).
    generator : torch.Generator or None
        Source of the initial weights.
    """

    def __init__(
        self,
        num_types: int,
        embed_dim: int,
        num_splines: int = 16,
        spline_span: int = 12,
        forward_weight_init: bool = True,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.num_types, self.embed_dim, self.num_splines = num_types, embed_dim, num_splines
        lower = torch.arange(-spline_span, num_splines - spline_span, dtype=torch.float64)
        lower = lower / num_splines
        width = (spline_span + 1) / num_splines
        self.register_buffer("lower", lower, persistent=False)
        self.register_buffer("upper", lower + width, persistent=False)
        self.frequency = 2.0 * math.pi / width
        bound = math.sqrt(3.0 / (spline_span if forward_weight_init else embed_dim))
        weights = torch.rand(
            num_types * num_types, embed_dim * num_splines, dtype=torch.float64, generator=generator
        )
        self.pair_weights = torch.nn.Parameter((2.0 * weights - 1.0) * bound)

    def forward(self, x: torch.Tensor, edge_types: torch.Tensor) -> torch.Tensor:
        """Embed (E, 1) float64 normalised lengths of edges with (2, E) types; (E, C) float64."""
        pair = edge_types[0] * self.num_types + edge_types[1]
        weights = self.pair_weights[pair].view(-1, self.embed_dim, self.num_splines)
        phase = self.frequency * (torch.clamp(x, min=self.lower, max=self.upper) - self.lower)
        basis = 0.25 * (1.0 - torch.cos(phase)).square()
        return torch.bmm(weights, basis.unsqueeze(-1)).squeeze(-1)
