"""Typed, validated hyperparameters of the Allegro model, and what all model configs share."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def cutoff_matrix(
    type_names: tuple[str, ...],
    r_max: float,
    per_edge_type_cutoff: Mapping[str, float | Mapping[str, float]] | None,
) -> torch.Tensor:
    """(T, T) float64 cutoffs, row = centre type, column = neighbour type (Å).

    ``per_edge_type_cutoff`` gives cutoffs by centre type, then optionally by neighbour type,
    e.g. ``{"H": 3.0, "C": {"H": 4.0}}``; missing entries use ``r_max``; values <= ``r_max``.
    """
    names = type_names
    matrix = torch.full((len(names), len(names)), float(r_max), dtype=torch.float64)
    for center, entry in (per_edge_type_cutoff or {}).items():
        if center not in names:
            raise ValueError(f"per_edge_type_cutoff names unknown type {center!r}.")
        row = entry if isinstance(entry, Mapping) else dict.fromkeys(names, entry)
        for neighbor, value in row.items():
            if neighbor not in names:
                raise ValueError(f"per_edge_type_cutoff names unknown type {neighbor!r}.")
            if not 0 < float(value) <= r_max:
                raise ValueError(
                    f"per_edge_type_cutoff[{center!r}][{neighbor!r}] = {value} must lie in "
                    f"(0, r_max = {r_max}]."
                )
            matrix[names.index(center), names.index(neighbor)] = float(value)
    return matrix


class ModelConfig:
    """What every architecture's frozen config dataclass shares.

    Subclasses are frozen dataclasses with at least ``type_names``, ``r_max``, ``l_max``,
    ``num_layers``, ``avg_num_neighbors``, ``per_edge_type_cutoff``, ``model_dtype`` and
    ``seed``; ``_check_common`` validates those fields.
    """

    label: ClassVar[str] = "model"

    def _check_common(self) -> None:
        object.__setattr__(self, "type_names", tuple(self.type_names))
        names = self.type_names
        if not names or len(set(names)) != len(names):
            raise ValueError(f"type_names must be non-empty and unique, got {list(names)}.")
        if not self.r_max > 0:
            raise ValueError(f"r_max must be positive, got {self.r_max}.")
        if self.l_max < 0 or self.num_layers < 1:
            raise ValueError(
                f"Need l_max >= 0 and num_layers >= 1, got {self.l_max}, {self.num_layers}."
            )
        if self.model_dtype not in DTYPES:
            raise ValueError(
                f"model_dtype must be one of {list(DTYPES)}, got {self.model_dtype!r}."
            )
        averages = self.avg_num_neighbors
        values = averages.values() if isinstance(averages, Mapping) else [averages]
        if isinstance(averages, Mapping) and set(averages) != set(names):
            raise ValueError(f"avg_num_neighbors must name every type of {list(names)}.")
        if not all(float(v) > 0 for v in values):
            raise ValueError(f"avg_num_neighbors must be positive, got {averages}.")
        self.cutoff_matrix()  # validates per_edge_type_cutoff

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype of the model weights."""
        return DTYPES[self.model_dtype]

    def cutoff_matrix(self) -> torch.Tensor:
        """(T, T) float64 cutoffs, row = centre type, column = neighbour type (Å)."""
        return cutoff_matrix(self.type_names, self.r_max, self.per_edge_type_cutoff)

    def replace(self, **changes: Any) -> Self:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of every field."""
        out = dataclasses.asdict(self)
        return {key: list(val) if isinstance(val, tuple) else val for key, val in out.items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """Build from a dictionary, rejecting unknown keys with their names."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown {cls.label} config keys {unknown}; valid keys are {sorted(known)}."
            )
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class AllegroConfig(ModelConfig):
    """Hyperparameters of :class:`~allegro_ase.models.AllegroModel`.

    Defaults follow the reference ``nequip-allegro`` 0.8 builder. Lengths in Å, energies in eV.

    Attributes
    ----------
    type_names : tuple of str
        Atom type names; the calculator maps chemical symbols to them.
    r_max : float
        Cutoff radius, Å.
    l_max : int
        Highest rotation order of the spherical harmonics and tensor features.
    avg_num_neighbors : float or dict
        Normaliser of neighbour sums, one value or one per type name.
    parity : bool
        Keep tensor features of both parities (True) or only those of the spherical harmonics.
    num_layers, num_scalar_features, num_tensor_features : int
        Number of Allegro layers and feature sizes (reference: 2, 64, 16).
    num_bessels, bessel_trainable, polynomial_cutoff_p
        Radial basis (8 Bessel functions, fixed frequencies, envelope exponent 6).
    radial_chemical_embed_dim : int or None
        Size of the two-body embedding; None means ``num_scalar_features``.
    scalar_embed_mlp_*, allegro_mlp_*, readout_mlp_*
        Depth, width and nonlinearity of the two-body, latent and readout MLPs.
    tp_path_channel_coupling : bool
        Tensor-product weights per (channel, path) if True, per path otherwise.
    weight_individual_irreps : bool
        Spherical-harmonic weights per (channel, irrep) if True, per channel otherwise.
    forward_normalize : bool
        Weight normalisation by fan-in (True) or fan-out (False).
    per_edge_type_cutoff : dict or None
        Cutoffs by centre type, then optionally by neighbour type, e.g.
        ``{"H": 3.0, "C": {"H": 4.0}}``; missing entries use ``r_max``; values <= ``r_max``.
    per_type_energy_scales, per_type_energy_shifts : float, dict or None
        Per-type affine map of per-atom energies (eV), applied in float64.
    per_type_energy_scales_trainable, per_type_energy_shifts_trainable : bool
        Whether training may change them.
    model_dtype : str
        ``"float32"`` or ``"float64"``.
    seed : int
        Seed of the initial weights (a local generator; global RNGs are untouched).
    """

    type_names: tuple[str, ...]
    r_max: float
    l_max: int
    avg_num_neighbors: float | dict[str, float]
    parity: bool = True
    num_layers: int = 2
    num_scalar_features: int = 64
    num_tensor_features: int = 16
    num_bessels: int = 8
    bessel_trainable: bool = False
    polynomial_cutoff_p: int = 6
    radial_chemical_embed_dim: int | None = None
    scalar_embed_mlp_hidden_layers_depth: int = 1
    scalar_embed_mlp_hidden_layers_width: int = 64
    scalar_embed_mlp_nonlinearity: str | None = "silu"
    allegro_mlp_hidden_layers_depth: int = 1
    allegro_mlp_hidden_layers_width: int = 64
    allegro_mlp_nonlinearity: str | None = "silu"
    readout_mlp_hidden_layers_depth: int = 1
    readout_mlp_hidden_layers_width: int = 32
    readout_mlp_nonlinearity: str | None = "silu"
    tp_path_channel_coupling: bool = True
    weight_individual_irreps: bool = True
    forward_normalize: bool = True
    per_edge_type_cutoff: dict[str, float | dict[str, float]] | None = None
    per_type_energy_scales: float | dict[str, float] | None = None
    per_type_energy_shifts: float | dict[str, float] | None = None
    per_type_energy_scales_trainable: bool = False
    per_type_energy_shifts_trainable: bool = False
    model_dtype: str = "float32"
    seed: int = 0

    label: ClassVar[str] = "Allegro"

    def __post_init__(self):
        self._check_common()
        if self.embed_dim % 2:
            raise ValueError(f"radial_chemical_embed_dim must be even, got {self.embed_dim}.")

    @property
    def embed_dim(self) -> int:
        """Size of the two-body embedding."""
        return self.radial_chemical_embed_dim or self.num_scalar_features
