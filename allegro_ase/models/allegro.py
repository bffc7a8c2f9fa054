"""The Allegro energy model (Musaelian et al., Nat. Commun. 14, 579, 2023).

Strictly local and edge based: every feature lives on a directed edge ij (centre i), and
atom i's energy depends only on atoms within the cutoff of i. Data flow of ``forward``:

1. normalised lengths x_ij = |r_ij| / r_c(T_i, T_j) (float64);
2. two-body scalars h_ij from the species pair and a radial basis of x_ij (Bessel functions
   times the envelope, or per-pair splines), then a scalar MLP;
3. edge tensors V_ij = w_ij * Y(r_ij) from spherical harmonics Y up to ``l_max``;
4. per layer: environment Gamma_i = sum_j w_ij Y_ij / sqrt(N_avg(T_i)), channelwise tensor
   product V_ij <- V_ij (x) Gamma_i, and a latent MLP on the concatenation of all earlier scalars;
5. readout MLP to edge energies, summed onto the centre with 1 / sqrt(2 N_avg(T_i)),
   then a per-type scale and shift in float64, plus the optional ZBL pair term.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3

from ..nn.embedding import TwoBodyEmbedding, TwoBodySplineEmbedding, WeightedChannels
from ..nn.mlp import ScalarMLP
from ..nn.radial import BesselBasis, PolynomialCutoff
from ..nn.tensor_product import ChannelwiseTensorProduct, group_by_center
from .base import EnergyModel
from .config import AllegroConfig


def tensor_track_irreps(config: AllegroConfig) -> list[o3.Irreps]:
    """Irreps of the edge tensors entering each layer, plus the (scalar) last output.

    Irreps that cannot reach the next layer's output through any path are pruned, as in the
    reference implementation, so that the parameter layout is identical.
    """
    sh = o3.Irreps.spherical_harmonics(config.l_max, p=-1)
    if config.parity:
        allowed = o3.Irreps([(1, (order, p)) for order in range(config.l_max + 1) for p in (1, -1)])
    else:
        allowed = sh
    track = [sh]
    for layer in range(config.num_layers):
        wanted = o3.Irreps("0e") if layer == config.num_layers - 1 else allowed
        reachable = [
            (1, ir_out)
            for _, ir_out in wanted
            if any(ir_out in a * b for _, a in track[-1] for _, b in sh)
        ]
        track.append(o3.Irreps(reachable))
    for layer in range(config.num_layers - 1, -1, -1):
        useful = [
            (1, ir)
            for _, ir in track[layer]
            if any(any(out in track[layer + 1] for out in ir * env) for _, env in sh)
        ]
        track[layer] = o3.Irreps(useful)
    return track


class AllegroModel(EnergyModel):
    """Allegro per-atom energies from edge vectors.

    Parameters
    ----------
    config : AllegroConfig
        Hyperparameters; ``config.seed`` seeds a local generator for the initial weights.
    """

    strictly_local = True  # no message passing: atom i's energy sees only edges centred on i

    def __init__(self, config: AllegroConfig):
        super().__init__(config)
        # True: the tensor products lay edges out densely per centre (fast; the layout's width
        # is data dependent). False: they gather per edge, with shapes fixed by N and E, which
        # torch.export needs (see allegro_ase.io.export). Not saved in state dicts.
        self.group_edges_by_center = True
        dtype = config.dtype
        generator = torch.Generator().manual_seed(config.seed)
        num_types = len(config.type_names)
        scalars, channels = config.num_scalar_features, config.num_tensor_features

        if config.two_body_embed == "spline":
            self.two_body_embed = TwoBodySplineEmbedding(
                num_types,
                config.embed_dim,
                config.num_splines,
                config.spline_span,
                config.forward_normalize,
                generator,
            )
        else:
            self.cutoff = PolynomialCutoff(config.polynomial_cutoff_p)
            self.bessel = BesselBasis(config.num_bessels, config.bessel_trainable)
            self.two_body_embed = TwoBodyEmbedding(
                num_types,
                config.num_bessels,
                config.embed_dim,
                config.forward_normalize,
                dtype,
                generator,
            )
        self.scalar_embed_mlp = ScalarMLP(
            config.embed_dim, scalars,
            config.scalar_embed_mlp_hidden_layers_depth,
            config.scalar_embed_mlp_hidden_layers_width,
            config.scalar_embed_mlp_nonlinearity,
            config.forward_normalize, dtype, generator,
        )  # fmt: skip

        irreps_sh = o3.Irreps.spherical_harmonics(config.l_max, p=-1)
        self.spherical_harmonics = o3.SphericalHarmonics(irreps_sh, True, "component")
        # spreads per-(channel, irrep) weights over spherical-harmonic components; no parameters
        self.weighter = WeightedChannels(irreps_sh, channels, config.weight_individual_irreps)
        self.sh_embed_linear = ScalarMLP(
            scalars,
            self.weighter.weight_numel,
            forward_weight_init=config.forward_normalize,
            dtype=dtype,
            generator=generator,
        )
        env_numel = self.weighter.weight_numel
        self.first_layer_projection = ScalarMLP(
            scalars,
            scalars + env_numel,
            forward_weight_init=config.forward_normalize,
            dtype=dtype,
            generator=generator,
        )
        track = tensor_track_irreps(config)
        self.tensor_products = torch.nn.ModuleList()
        self.latents = torch.nn.ModuleList()
        for layer in range(config.num_layers):
            self.tensor_products.append(
                ChannelwiseTensorProduct(
                    track[layer],
                    irreps_sh,
                    track[layer + 1],
                    channels,
                    config.tp_path_channel_coupling,
                    dtype,
                    generator,
                )
            )
            last = layer == config.num_layers - 1
            self.latents.append(
                ScalarMLP(
                    scalars * (layer + 1) + channels,
                    scalars + (0 if last else env_numel),
                    config.allegro_mlp_hidden_layers_depth,
                    config.allegro_mlp_hidden_layers_width,
                    config.allegro_mlp_nonlinearity,
                    config.forward_normalize, dtype, generator,
                )
            )  # fmt: skip
        self.readout = ScalarMLP(
            scalars * (config.num_layers + 1), 1,
            config.readout_mlp_hidden_layers_depth,
            config.readout_mlp_hidden_layers_width,
            config.readout_mlp_nonlinearity,
            config.forward_normalize, dtype, generator,
        )  # fmt: skip
        self.add_energy_normalisation(dtype)

    def forward(
        self, edge_vec: torch.Tensor, edge_index: torch.Tensor, atom_types: torch.Tensor
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

        Returns
        -------
        torch.Tensor
            (N,) float64 per-atom energies, eV.
        """
        dtype = self.readout.weights[0].dtype
        num_atoms, num_scalars = atom_types.shape[0], self.config.num_scalar_features
        center = edge_index[0]
        edge_types = atom_types[edge_index]

        # radial basis, float64 until the cast
        length = torch.linalg.vector_norm(edge_vec, dim=-1, keepdim=True)
        num_types = self.cutoff_matrix.shape[0]
        pair_index = edge_types[0] * num_types + edge_types[1]
        inv_cutoff = self.cutoff_matrix.reciprocal().view(-1)[pair_index]
        x = length * inv_cutoff.unsqueeze(-1)

        # two-body scalars and tensors
        if self.config.two_body_embed == "spline":
            two_body = self.two_body_embed(x, edge_types).to(dtype)
        else:
            two_body = self.two_body_embed((self.bessel(x) * self.cutoff(x)).to(dtype), edge_types)
        scalar = self.scalar_embed_mlp(two_body)
        sh = self.spherical_harmonics(edge_vec).to(dtype)
        tensors = self.weighter(sh, self.sh_embed_linear(scalar))

        # Allegro layers
        norm = self.neighbor_norm[atom_types]
        groups = group_by_center(center, num_atoms) if self.group_edges_by_center else None
        projection = self.first_layer_projection(scalar)
        features = [projection[:, :num_scalars]]
        env_weights = projection[:, num_scalars:]
        for tensor_product, latent in zip(self.tensor_products, self.latents, strict=True):
            env_edges = self.weighter(sh, env_weights)
            env = torch.zeros((num_atoms, *env_edges.shape[1:]), dtype=dtype, device=sh.device)
            env = env.index_add(0, center, env_edges) * norm.view(-1, 1, 1)
            tensors = tensor_product(tensors, env, center, groups)
            latents = latent(torch.cat([*features, tensors[:, :, 0]], dim=-1))
            features.append(latents[:, :num_scalars])
            env_weights = latents[:, num_scalars:]

        # edge energies onto centre atoms
        edge_energy = self.readout(torch.cat(features, dim=-1)).squeeze(-1)
        atom_energy = torch.zeros(num_atoms, dtype=dtype, device=sh.device)
        atom_energy = atom_energy.index_add(0, center, edge_energy) * norm.view(-1) / math.sqrt(2)
        return self.finish_energies(atom_energy, atom_types, edge_index, edge_types, length, x)
