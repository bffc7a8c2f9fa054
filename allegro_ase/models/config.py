"""Typed, validated hyperparameters of the Allegro model, and what all model configs share."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch

from ..nn.pair_potential import COULOMB_CONSTANT, species_atomic_numbers

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


def pair_potential_config(
    value: str | Mapping[str, Any] | None, type_names: tuple[str, ...]
) -> dict[str, Any] | None:
    """Normalise a ``pair_potential`` setting: None, ``"zbl"`` or a ZBL dictionary.

    The dictionary form is ``{"kind": "zbl", "units": "metal", "chemical_species": None,
    "polynomial_cutoff_p": 6.0, "r_max": None}`` (these are the defaults); ``chemical_species``
    (one chemical symbol per type name) may be left out when the type names are chemical
    symbols. ``r_max`` (Å) cuts the term off at the shorter of it and the edge-type cutoff; None
    keeps the edge-type cutoff, as in the reference framework.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, Mapping):
        raise ValueError(f"pair_potential must be None, 'zbl' or a dictionary, got {value!r}.")
    defaults = {
        "kind": "zbl",
        "units": "metal",
        "chemical_species": None,
        "polynomial_cutoff_p": 6.0,
        "r_max": None,
    }
    unknown = sorted(set(value) - set(defaults))
    if unknown:
        raise ValueError(f"Unknown pair_potential keys {unknown}; valid keys are {list(defaults)}.")
    out = {**defaults, **value}
    if out["kind"] != "zbl":
        raise ValueError(f"The only pair_potential is 'zbl', got {out['kind']!r}.")
    if out["units"] not in COULOMB_CONSTANT:
        raise ValueError(
            f"pair_potential units must be one of {list(COULOMB_CONSTANT)}, got {out['units']!r}."
        )
    species = out["chemical_species"]
    if species is not None:
        species = list(species)
        if len(species) != len(type_names):
            raise ValueError(
                f"pair_potential chemical_species needs one symbol per type name "
                f"({len(type_names)}), got {len(species)}."
            )
    species_atomic_numbers(species if species is not None else type_names)
    out["chemical_species"] = species
    out["polynomial_cutoff_p"] = float(out["polynomial_cutoff_p"])
    if out["r_max"] is not None:
        if isinstance(out["r_max"], bool) or not isinstance(out["r_max"], (int, float)):
            raise ValueError(
                f"pair_potential r_max must be a cutoff in Å or None, got {out['r_max']!r}."
            )
        out["r_max"] = float(out["r_max"])
        if not out["r_max"] > 0:
            raise ValueError(f"pair_potential r_max must be positive (Å), got {out['r_max']}.")
    return out


class ModelConfig:
    """What every architecture's frozen config dataclass shares.

    Subclasses are frozen dataclasses with at least ``type_names``, ``r_max``, ``l_max``,
    ``num_layers``, ``avg_num_neighbors``, ``per_edge_type_cutoff``, ``pair_potential``,
    ``model_dtype`` and ``seed``; ``_check_common`` validates those fields.
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
        object.__setattr__(
            self, "pair_potential", pair_potential_config(self.pair_potential, self.type_names)
        )

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
    two_body_embed : str
        ``"bessel"``: species-pair embedding times a linear map of a Bessel basis with the
        polynomial envelope (reference ``TwoBodyBesselScalarEmbed``); ``"spline"``: per type
        pair, a learned combination of smooth bumps that vanish at the cutoff (reference
        ``TwoBodySplineScalarEmbed``).
    num_bessels, bessel_trainable, polynomial_cutoff_p
        Bessel basis (8 Bessel functions, fixed frequencies, envelope exponent 6).
    num_splines, spline_span
        Spline basis (16 bumps, each spanning 12 grid intervals).
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
    pair_potential : str, dict or None
        ``"zbl"`` adds the ZBL nuclear repulsion (:class:`~allegro_ase.nn.pair_potential.ZBL`)
        to the per-atom energies; a dict sets its ``units``, ``chemical_species``,
        ``polynomial_cutoff_p`` and ``r_max`` (its own, shorter cutoff in Å; default None,
        the edge-type cutoff). None: no pair term.
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
    two_body_embed: str = "bessel"
    num_bessels: int = 8
    bessel_trainable: bool = False
    polynomial_cutoff_p: int = 6
    num_splines: int = 16
    spline_span: int = 12
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
    pair_potential: str | dict[str, Any] | None = None
    model_dtype: str = "float32"
    seed: int = 0

    label: ClassVar[str] = "Allegro"

    def __post_init__(self):
        self._check_common()
        if self.two_body_embed not in ("bessel", "spline"):
            raise ValueError(
                f"two_body_embed must be 'bessel' or 'spline', got {self.two_body_embed!r}."
            )
        if self.two_body_embed == "bessel" and self.embed_dim % 2:
            raise ValueError(
                f"radial_chemical_embed_dim must be even with the Bessel embedding (half for "
                f"each type of the pair), got {self.embed_dim}."
            )
        if not 0 <= self.spline_span <= self.num_splines or self.num_splines < 1:
            raise ValueError(
                f"Need 0 <= spline_span <= num_splines and num_splines >= 1, got "
                f"{self.spline_span}, {self.num_splines}."
            )

    @property
    def embed_dim(self) -> int:
        """Size of the two-body embedding."""
        return self.radial_chemical_embed_dim or self.num_scalar_features
