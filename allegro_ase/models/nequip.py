"""The NequIP energy model (Batzner et al., Nat. Commun. 13, 2453, 2022), as in nequip 0.19.

Message passing on atoms: after ``num_layers`` layers, atom i's energy depends on every atom
reachable from i in ``num_layers`` hops of length below the cutoff, i.e. within
``num_layers * r_max``. Data flow of ``forward``:

1. species embedding z_i (a learned vector per type) as initial features and attributes;
2. normalised lengths x_ij = |r_ij| / r_c(T_i, T_j), Bessel basis times envelope (float64,
   then cast), times 2 pi / r_max^2 (the reference's normalisation), and spherical harmonics
   Y(r_ij) up to ``l_max``;
3. ``num_layers`` convolution layers (:class:`~allegro_ase.nn.interaction.ConvNetLayer`), the
   last one producing scalars only;
4. readout MLP to per-atom energies, then a per-type scale and shift in float64, plus the
   optional ZBL pair term.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3

from ..nn.interaction import ConvNetLayer
from ..nn.mlp import ScalarMLP
from ..nn.radial import BesselBasis, PolynomialCutoff
from .base import EnergyModel
from .nequip_config import NequIPConfig


class NequIPModel(EnergyModel):
    """NequIP per-atom energies from edge vectors.

    Parameters
    ----------
    config : NequIPConfig
        Hyperparameters; ``config.seed`` seeds a local generator for the initial weights.
    """

    def __init__(self, config: NequIPConfig):
        super().__init__(config)
        dtype = config.dtype
        generator = torch.Generator().manual_seed(config.seed)
        num_types = len(config.type_names)

        self.cutoff = PolynomialCutoff(config.polynomial_cutoff_p)
        self.bessel = BesselBasis(config.num_bessels, config.bessel_trainable)
        self.radial_factor = 2.0 * math.pi / config.r_max**2
        self.type_embed = torch.nn.Parameter(
            torch.randn(num_types, config.type_embed_dim, dtype=dtype, generator=generator)
        )
        irreps_sh = config.edge_sh_irreps
        self.spherical_harmonics = o3.SphericalHarmonics(irreps_sh, True, "component")

        irreps_attr = o3.Irreps([(config.type_embed_dim, (0, 1))])
        irreps = irreps_attr
        self.layers = torch.nn.ModuleList()
        depths, widths = config.per_layer("radial_mlp_depth"), config.per_layer("radial_mlp_width")
        for layer, wanted in enumerate(config.layer_irreps):
            first = layer == 0
            self.layers.append(
                ConvNetLayer(
                    irreps, irreps_attr, irreps_sh, wanted,
                    config.convnet_nonlinearity_scalars, config.convnet_nonlinearity_gates,
                    resnet=config.convnet_resnet and (config.learnable_shift or not first),
                    num_radial=config.num_bessels,
                    radial_mlp_depth=depths[layer],
                    radial_mlp_width=widths[layer],
                    use_sc=config.convnet_sc and (config.learnable_shift or not first),
                    dtype=dtype, generator=generator,
                )
            )  # fmt: skip
            irreps = self.layers[-1].irreps_out
        self.readout = ScalarMLP(
            irreps.dim, 1,
            config.readout_mlp_hidden_layers_depth,
            config.readout_mlp_hidden_layers_width or irreps.dim,
            config.readout_mlp_nonlinearity,
            True, dtype, generator,
        )  # fmt: skip
        self.add_energy_normalisation(dtype)

    @property
    def shares_reverse_edges(self) -> bool:
        """Whether an edge and its reverse have the same radial weights (symmetric cutoffs)."""
        return bool(torch.equal(self.cutoff_matrix, self.cutoff_matrix.T))

    def forward(
        self,
        edge_vec: torch.Tensor,
        edge_index: torch.Tensor,
        atom_types: torch.Tensor,
        pair_first: torch.Tensor | None = None,
        pair_of_edge: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-atom energies.

        Parameters
        ----------
        edge_vec : torch.Tensor
            (E, 3) float64 edge vectors r_ij, Å.
        edge_index : torch.Tensor
            (2, E) int64; row 0 centre i, row 1 neighbour j.
        atom_types : torch.Tensor
            (N,) int64 type indices.
        pair_first, pair_of_edge : torch.Tensor or None
            (P,) and (E,) int64 pairs of reverse edges
            (:func:`~allegro_ase.graph.reverse_edge_pairs`), only with
            :attr:`shares_reverse_edges`: the radial basis and radial MLPs are evaluated once
            per pair (an edge and its reverse have the same length). None: once per edge.

        Returns
        -------
        torch.Tensor
            (N,) float64 per-atom energies, eV.
        """
        dtype = self.type_embed.dtype
        edge_types = atom_types[edge_index]

        # radial basis and harmonics from float64 geometry, then cast
        length = torch.linalg.vector_norm(edge_vec, dim=-1, keepdim=True)
        num_types = self.cutoff_matrix.shape[0]
        pair_index = edge_types[0] * num_types + edge_types[1]
        x = length * self.cutoff_matrix.reciprocal().view(-1)[pair_index].unsqueeze(-1)
        x_radial = x if pair_first is None else x[pair_first]
        radial = self.bessel(x_radial).to(dtype) * self.cutoff(x_radial).to(dtype)
        radial = self.radial_factor * radial  # (E or P, num_bessels)
        sh = self.spherical_harmonics(edge_vec).to(dtype)

        # message passing
        h = node_attrs = self.type_embed[atom_types]
        norm = self.neighbor_norm[atom_types].unsqueeze(-1)
        # no weight needs gradients: forces and stress only (one backward pass)
        inference = not any(p.requires_grad for p in self.parameters())
        for layer in self.layers:
            h = layer(h, node_attrs, sh, radial, edge_index, norm, pair_of_edge, inference)
        atom_energy = self.readout(h).squeeze(-1)
        return self.finish_energies(atom_energy, atom_types, edge_index, edge_types, length, x)
