"""What every energy model shares: its config, type names, cutoffs and energy normalisation."""

from __future__ import annotations

import torch

from ..nn.scale_shift import PerTypeScaleShift, per_type_values


class EnergyModel(torch.nn.Module):
    """Base of the architectures: ``forward(edge_vec, edge_index, atom_types) -> (N,)`` energies.

    Parameters
    ----------
    config
        The architecture's config; it has ``type_names``, ``r_max``, ``cutoff_matrix()``,
        ``avg_num_neighbors`` and the per-type energy scale/shift fields.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.register_buffer("cutoff_matrix", config.cutoff_matrix())

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
