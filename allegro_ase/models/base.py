"""What every energy model shares: its config, type names, cutoffs and energy normalisation."""

from __future__ import annotations

import torch

from ..nn.pair_potential import ZBL
from ..nn.scale_shift import PerTypeScaleShift, per_type_values


class EnergyModel(torch.nn.Module):
    """Base of the architectures: ``forward(edge_vec, edge_index, atom_types) -> (N,)`` energies.

    Parameters
    ----------
    config
        The architecture's config; it has ``type_names``, ``r_max``, ``cutoff_matrix()``,
        ``avg_num_neighbors`` and the per-type energy scale/shift fields.

    Attributes
    ----------
    shares_reverse_edges : bool
        True when ``forward`` also takes ``pair_first`` and ``pair_of_edge``
        (:func:`~allegro_ase.graph.reverse_edge_pairs`) and then evaluates its per-edge radial
        terms once per pair of reverse edges.
    strictly_local : bool
        True when the energy of atom i depends only on the edges centred on i, their vectors
        and the types at both ends (Allegro: no message passing), so a structure can be
        evaluated in blocks of centre atoms.
    """

    strictly_local = False
    # True when forward takes pair_first / pair_of_edge (graph.reverse_edge_pairs)
    shares_reverse_edges = False

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.register_buffer("cutoff_matrix", config.cutoff_matrix())
        pair = config.pair_potential
        self.pair_potential = (
            ZBL(
                pair["chemical_species"] or config.type_names,
                pair["units"],
                pair["polynomial_cutoff_p"],
                config.dtype,
                pair["r_max"],
            )
            if pair
            else None
        )

    @property
    def type_names(self) -> tuple[str, ...]:
        """Type names, in the order of ``atom_types``."""
        return self.config.type_names

    @property
    def r_max(self) -> float:
        """Largest cutoff radius, Å."""
        return float(self.config.r_max)

    def add_energy_normalisation(self, dtype: torch.dtype) -> None:
        """Register ``neighbor_norm`` (T,) = 1/sqrt(avg_num_neighbors) and the per-type ``scale_shift``."""
        config = self.config
        averages = per_type_values(config.avg_num_neighbors, config.type_names, 1.0)
        self.register_buffer("neighbor_norm", averages.rsqrt().to(dtype))
        self.scale_shift = PerTypeScaleShift(
            config.type_names,
            config.per_type_energy_scales,
            config.per_type_energy_shifts,
            config.per_type_energy_scales_trainable,
            config.per_type_energy_shifts_trainable,
        )

    def finish_energies(
        self,
        atom_energy: torch.Tensor,
        atom_types: torch.Tensor,
        edge_index: torch.Tensor,
        edge_types: torch.Tensor,
        length: torch.Tensor,
        x: torch.Tensor,
    ) -> torch.Tensor:
        """Per-type scale and shift of the network's (N,) energies, plus the pair term.

        ``length`` and ``x`` are the (E, 1) float64 edge lengths (Å) and lengths over the
        edge-type cutoff; ``edge_types`` is (2, E). Returns (N,) float64 energies, eV.
        """
        energy = self.scale_shift(atom_energy, atom_types)
        if self.pair_potential is None:
            return energy
        pair = self.pair_potential(
            length.view(-1), x.view(-1), edge_types, edge_index[0], atom_types.shape[0]
        )
        return energy + pair
