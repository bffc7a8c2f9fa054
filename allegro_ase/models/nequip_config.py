"""Typed, validated hyperparameters of the NequIP model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from e3nn import o3

from ..nn.interaction import GATE_ACTIVATIONS
from ..nn.mlp import NONLINEARITIES
from .config import ModelConfig


def _default_activations() -> dict[str, str]:
    return {"e": "silu", "o": "tanh"}


@dataclass(frozen=True, kw_only=True)
class NequIPConfig(ModelConfig):
    """Hyperparameters of :class:`~allegro_ase.models.NequIPModel`.

    Defaults follow the reference ``nequip`` 0.19 ``NequIPGNNModel`` builder. Lengths in Å,
    energies in eV.

    Attributes
    ----------
    type_names : tuple of str
        Atom type names; the calculator maps chemical symbols to them.
    r_max : float
        Cutoff radius, Å. The receptive field of an atom is ``num_layers * r_max``.
    avg_num_neighbors : float or dict
        Normaliser of message sums, one value or one per type name (of the sending atom).
    l_max : int
        Highest rotation order of the spherical harmonics and node features.
    parity : bool
        Node features of both parities (True) or only the natural parity (-1)^l.
    num_layers : int
        Number of interaction (convolution) layers.
    num_features : int or tuple of int
        Multiplicity of the node features, one value or one per l = 0 ... l_max.
    type_embed_num_features : int or None
        Size of the species embedding; None means ``num_features`` of l = 0.
    radial_mlp_depth, radial_mlp_width : int or tuple of int
        Hidden layers of the MLP mapping the radial basis to tensor-product weights, one value
        for all layers or one per layer.
    feature_irreps_hidden : tuple of str or None
        Output irreps of each layer (e.g. ``("32x0e+16x1o", "32x0e")``; the last must be
        scalars), as the reference ``FullNequIPGNNModel`` takes them; sets ``num_layers``. None:
        built from ``num_features``, ``l_max`` and ``parity`` as ``NequIPGNNModel`` does.
    irreps_edge_sh : str or None
        Irreps of the edge spherical harmonics; None means all l <= ``l_max``.
    readout_mlp_hidden_layers_depth, readout_mlp_hidden_layers_width, readout_mlp_nonlinearity
        Per-atom energy readout MLP (default linear); width None means the l = 0 multiplicity.
    num_bessels, bessel_trainable, polynomial_cutoff_p
        Radial basis (8 Bessel functions, fixed frequencies, envelope exponent 6).
    per_edge_type_cutoff : dict or None
        Cutoffs by centre type, then optionally by neighbour type; values <= ``r_max``.
    per_type_energy_scales, per_type_energy_shifts : float, dict or None
        Per-type affine map of per-atom energies (eV), applied in float64.
    per_type_energy_scales_trainable, per_type_energy_shifts_trainable : bool
        Whether training may change them.
    convnet_sc : bool
        Self-connection (a tensor product of node features and species embedding) in every
        layer but the first, so that an isolated atom's energy is its shift.
    convnet_resnet : bool
        Residual update in layers (but the first) whose input and output irreps agree.
    learnable_shift : bool
        Also use self-connection and residual update in the first layer.
    convnet_nonlinearity_scalars, convnet_nonlinearity_gates : dict
        Activations of even (``"e"``) and odd (``"o"``) scalars and gates: ``"silu"``,
        ``"tanh"``, ``"abs"`` or ``"ssp"``.
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
    avg_num_neighbors: float | dict[str, float]
    l_max: int = 1
    parity: bool = True
    num_layers: int = 4
    num_features: int | tuple[int, ...] = 32
    type_embed_num_features: int | None = None
    radial_mlp_depth: int | tuple[int, ...] = 1
    radial_mlp_width: int | tuple[int, ...] = 128
    feature_irreps_hidden: tuple[str, ...] | None = None
    irreps_edge_sh: str | None = None
    readout_mlp_hidden_layers_depth: int = 0
    readout_mlp_hidden_layers_width: int | None = None
    readout_mlp_nonlinearity: str | None = "silu"
    num_bessels: int = 8
    bessel_trainable: bool = False
    polynomial_cutoff_p: int = 6
    per_edge_type_cutoff: dict[str, float | dict[str, float]] | None = None
    per_type_energy_scales: float | dict[str, float] | None = None
    per_type_energy_shifts: float | dict[str, float] | None = None
    per_type_energy_scales_trainable: bool = False
    per_type_energy_shifts_trainable: bool = False
    convnet_sc: bool = True
    convnet_resnet: bool = False
    learnable_shift: bool = False
    convnet_nonlinearity_scalars: dict[str, str] = field(default_factory=_default_activations)
    convnet_nonlinearity_gates: dict[str, str] = field(default_factory=_default_activations)
    pair_potential: str | dict[str, Any] | None = None
    model_dtype: str = "float32"
    seed: int = 0

    label: ClassVar[str] = "NequIP"

    def __post_init__(self):
        for name in ("num_features", "radial_mlp_depth", "radial_mlp_width"):
            if isinstance(getattr(self, name), list | tuple):
                object.__setattr__(self, name, tuple(int(n) for n in getattr(self, name)))
        if self.feature_irreps_hidden is not None:
            self._check_feature_irreps()
        self._check_common()
        for name in ("radial_mlp_depth", "radial_mlp_width"):
            values = getattr(self, name)
            if isinstance(values, tuple) and len(values) != self.num_layers:
                raise ValueError(
                    f"{name} needs one value per layer ({self.num_layers}), got {list(values)}."
                )
        if len(self.feature_multiplicities) != self.l_max + 1:
            raise ValueError(
                f"num_features needs one multiplicity per l = 0 ... l_max = {self.l_max}, got "
                f"{list(self.num_features)}."
            )
        if min(self.feature_multiplicities) < 1 or self.type_embed_dim < 1:
            raise ValueError(
                f"Feature sizes must be positive, got num_features={self.num_features}, "
                f"type_embed_num_features={self.type_embed_num_features}."
            )
        if self.readout_mlp_nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"Unknown readout_mlp_nonlinearity {self.readout_mlp_nonlinearity!r}; choose one "
                f"of {list(NONLINEARITIES)}."
            )
        if self.learnable_shift and not (self.convnet_sc or self.convnet_resnet):
            raise ValueError("learnable_shift=True needs convnet_sc or convnet_resnet.")
        for name in ("convnet_nonlinearity_scalars", "convnet_nonlinearity_gates"):
            acts = getattr(self, name)
            if not isinstance(acts, Mapping) or set(acts) != {"e", "o"}:
                raise ValueError(f"{name} must map 'e' and 'o' to activations, got {acts!r}.")
            unknown = sorted(set(acts.values()) - set(GATE_ACTIVATIONS))
            if unknown:
                raise ValueError(
                    f"{name} names unknown activations {unknown}; choose from "
                    f"{sorted(GATE_ACTIVATIONS)}."
                )

    def _check_feature_irreps(self) -> None:
        """Normalise ``feature_irreps_hidden``/``irreps_edge_sh``; they set num_layers and l_max."""
        try:
            layers = tuple(str(o3.Irreps(irreps)) for irreps in self.feature_irreps_hidden)
            sh = (
                o3.Irreps(self.irreps_edge_sh)
                if self.irreps_edge_sh is not None
                else o3.Irreps.spherical_harmonics(self.l_max)
            )
        except (ValueError, AssertionError, TypeError) as error:
            raise ValueError(
                f"feature_irreps_hidden {self.feature_irreps_hidden!r} and irreps_edge_sh "
                f"{self.irreps_edge_sh!r} must be e3nn irreps strings: {error}"
            ) from error
        if not layers or any(ir.l for _, ir in o3.Irreps(layers[-1])):
            raise ValueError(
                f"The last entry of feature_irreps_hidden must hold scalars only, got {layers}."
            )
        object.__setattr__(self, "feature_irreps_hidden", layers)
        object.__setattr__(self, "irreps_edge_sh", str(sh))
        object.__setattr__(self, "num_layers", len(layers))
        object.__setattr__(self, "l_max", sh.lmax)

    @property
    def layer_irreps(self) -> list[o3.Irreps]:
        """Wanted output irreps of each layer: all features, then l = 0 scalars for the last."""
        if self.feature_irreps_hidden is not None:
            return [o3.Irreps(irreps) for irreps in self.feature_irreps_hidden]
        parities = (1, -1) if self.parity else None
        features = o3.Irreps(
            [
                (mul, (order, parity))
                for order, mul in enumerate(self.feature_multiplicities)
                for parity in (parities or ((-1) ** order,))
            ]
        )
        last = o3.Irreps([(self.feature_multiplicities[0], (0, 1))])
        return [features] * (self.num_layers - 1) + [last]

    @property
    def edge_sh_irreps(self) -> o3.Irreps:
        """Irreps of the edge spherical harmonics."""
        if self.irreps_edge_sh is not None:
            return o3.Irreps(self.irreps_edge_sh)
        return o3.Irreps.spherical_harmonics(self.l_max)

    def per_layer(self, name: str) -> tuple[int, ...]:
        """``radial_mlp_depth`` or ``radial_mlp_width`` as one value per layer."""
        values = getattr(self, name)
        return values if isinstance(values, tuple) else (values,) * self.num_layers

    @property
    def feature_multiplicities(self) -> tuple[int, ...]:
        """Multiplicity of the node features for each l = 0 ... l_max."""
        if isinstance(self.num_features, int):
            return (self.num_features,) * (self.l_max + 1)
        return self.num_features

    @property
    def type_embed_dim(self) -> int:
        """Size of the species embedding."""
        if self.type_embed_num_features is None:
            return self.feature_multiplicities[0]
        return self.type_embed_num_features
