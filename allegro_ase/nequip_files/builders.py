"""Translate the reference builders' arguments (a config's ``model`` section) into our configs.

The reference builds a model from a dictionary naming its builder under ``_target_``. Builders
rebuilt here:

=============================================  ===========  ==================================
``_target_``                                   ours         note
=============================================  ===========  ==================================
``allegro.model.AllegroModel``                 Allegro      also under its module path
``allegro.model.allegro_models.AllegroModel``
``nequip.model.NequIPGNNModel``                NequIP       one set of sizes for all layers
``nequip.model.PresetNequIPGNNModel``          NequIP       sizes S, M, L, XL
``nequip.model.FullNequIPGNNModel``            NequIP       per-layer irreps and radial MLPs
=============================================  ===========  ==================================

Wrappers are unwrapped by :mod:`allegro_ase.nequip_files.wrappers`; the ZBL pair term
(``nequip.nn.pair_potential.ZBL``) and both two-body embeddings of Allegro are rebuilt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..models import AllegroConfig, NequIPConfig

_BESSEL_EMBED = "allegro.nn.TwoBodyBesselScalarEmbed"
_SPLINE_EMBED = "allegro.nn.TwoBodySplineScalarEmbed"
ZBL_TARGET = "nequip.nn.pair_potential.ZBL"
_IGNORED_KEYS = {"_target_", "compile_mode", "do_derivatives"}
_SHARED_KEYS = {
    "type_names", "r_max", "l_max", "parity", "num_layers", "avg_num_neighbors",
    "per_edge_type_cutoff", "per_type_energy_scales", "per_type_energy_shifts",
    "per_type_energy_scales_trainable", "per_type_energy_shifts_trainable", "model_dtype", "seed",
}  # fmt: skip
_ALLEGRO_KEYS = _SHARED_KEYS | {
    "num_scalar_features", "num_tensor_features", "radial_chemical_embed_dim",
    "tp_path_channel_coupling", "weight_individual_irreps", "forward_normalize",
    *(f"{mlp}_mlp_hidden_layers_{what}" for mlp in ("scalar_embed", "allegro", "readout")
      for what in ("depth", "width")),
}  # fmt: skip
_ALLEGRO_NONLINEARITIES = {
    f"{mlp}_mlp_nonlinearity" for mlp in ("scalar_embed", "allegro", "readout")
}
_NEQUIP_KEYS = _SHARED_KEYS | {
    "num_features", "type_embed_num_features", "radial_mlp_depth", "radial_mlp_width",
    "feature_irreps_hidden", "irreps_edge_sh", "readout_mlp_hidden_layers_depth",
    "readout_mlp_hidden_layers_width", "num_bessels", "bessel_trainable", "polynomial_cutoff_p",
    "convnet_sc", "convnet_resnet", "learnable_shift", "convnet_nonlinearity_scalars",
    "convnet_nonlinearity_gates",
}  # fmt: skip
_NEQUIP_DEFAULT_ONLY = {"categorical_graph_field_embed": None, "convnet_nonlinearity_type": "gate"}
NEQUIP_PRESETS = {
    "S": dict(num_layers=2, l_max=1, num_features=[128, 64]),
    "M": dict(num_layers=4, l_max=2, num_features=[128, 64, 32]),
    "L": dict(num_layers=6, l_max=3, num_features=[128, 64, 32, 32]),
    "XL": dict(num_layers=6, l_max=4, num_features=[320, 96, 64, 32, 32]),
}
_NEQUIP_PRESET_SHARED = dict(
    parity=False, type_embed_num_features=32, radial_mlp_depth=1, radial_mlp_width=128
)


def _nonlinearity(value: Any) -> str | None:
    return None if value in (None, "None", "null") else value


def pair_potential_from_reference(value: Any) -> dict[str, Any] | None:
    """Our ``pair_potential`` setting for the reference builder's ``pair_potential`` entry.

    Raises
    ------
    ValueError
        For a pair term other than ZBL (e.g. Lennard-Jones), naming it.
    """
    if value is None:
        return None
    target = value.get("_target_") if isinstance(value, Mapping) else None
    if target != ZBL_TARGET:
        raise ValueError(f"pair_potential {target or value!r} (only {ZBL_TARGET} is rebuilt)")
    unknown = sorted(set(value) - {"_target_", "units", "chemical_species", "polynomial_cutoff_p"})
    if unknown:
        raise ValueError(f"ZBL arguments {unknown} (known: units, chemical_species, p)")
    return {
        "kind": "zbl",
        "units": value.get("units", "metal"),
        "chemical_species": value.get("chemical_species"),
        "polynomial_cutoff_p": value.get("polynomial_cutoff_p", 6.0),
    }


def _translate(
    model_kwargs: Mapping[str, Any],
    same_name: set[str],
    special: dict[str, Any],
    label: str,
) -> dict[str, Any]:
    """Copy known keys, apply ``special[key](value) -> dict`` translators, collect the rest."""
    values: dict[str, Any] = {}
    unsupported = []
    for key, value in model_kwargs.items():
        if key in _IGNORED_KEYS:
            continue
        if key in same_name:
            values[key] = value
        elif key in special:
            try:
                values.update(special[key](value))
            except ValueError as error:
                unsupported.append(str(error))
        else:
            unsupported.append(f"{key}={value!r}")
    if unsupported:
        raise ValueError(
            f"This reference {label} model uses options allegro-ase does not implement: "
            + "; ".join(unsupported)
        )
    return values


def _radial_chemical_embed(value: Mapping[str, Any]) -> dict[str, Any]:
    target = value.get("_target_")
    if target == _BESSEL_EMBED:
        return {
            "two_body_embed": "bessel",
            "num_bessels": value.get("num_bessels", 8),
            "bessel_trainable": value.get("bessel_trainable", False),
            "polynomial_cutoff_p": value.get("polynomial_cutoff_p", 6),
        }
    if target == _SPLINE_EMBED:
        return {
            "two_body_embed": "spline",
            "num_splines": value.get("num_splines", 16),
            "spline_span": value.get("spline_span", 12),
        }
    raise ValueError(f"radial_chemical_embed {target!r} (known: {_BESSEL_EMBED}, {_SPLINE_EMBED})")


def allegro_config_from_reference(model_kwargs: Mapping[str, Any]) -> AllegroConfig:
    """Translate the reference ``AllegroModel`` builder arguments into an :class:`AllegroConfig`.

    Raises
    ------
    ValueError
        Naming every argument or module this package does not implement.
    """
    special = {
        "radial_chemical_embed": _radial_chemical_embed,
        "pair_potential": lambda v: {"pair_potential": pair_potential_from_reference(v)},
        **{key: (lambda v, k=key: {k: _nonlinearity(v)}) for key in _ALLEGRO_NONLINEARITIES},
    }
    return AllegroConfig(**_translate(model_kwargs, _ALLEGRO_KEYS, special, "Allegro"))


def _default_only(key: str):
    def check(value: Any) -> dict[str, Any]:
        if value != _NEQUIP_DEFAULT_ONLY[key]:
            raise ValueError(f"{key}={value!r}")
        return {}

    return check


def nequip_config_from_reference(model_kwargs: Mapping[str, Any]) -> NequIPConfig:
    """Translate ``NequIPGNNModel``, ``PresetNequIPGNNModel`` or ``FullNequIPGNNModel`` arguments.

    Raises
    ------
    ValueError
        Naming every argument this package does not implement.
    """
    kwargs = dict(model_kwargs)
    if "preset" in kwargs:
        preset = str(kwargs.pop("preset")).upper()
        if preset not in NEQUIP_PRESETS:
            raise ValueError(f"Unknown NequIP preset {preset!r}; known: {list(NEQUIP_PRESETS)}.")
        kwargs = {**_NEQUIP_PRESET_SHARED, **NEQUIP_PRESETS[preset], **kwargs}
    special = {
        "readout_mlp_nonlinearity": lambda v: {"readout_mlp_nonlinearity": _nonlinearity(v)},
        "pair_potential": lambda v: {"pair_potential": pair_potential_from_reference(v)},
        **{key: _default_only(key) for key in _NEQUIP_DEFAULT_ONLY},
    }
    values = _translate(kwargs, _NEQUIP_KEYS, special, "NequIP")
    if "feature_irreps_hidden" in values:
        # FullNequIPGNNModel: irreps_edge_sh may be an int (l_max) or an irreps string
        sh = values.get("irreps_edge_sh")
        values["irreps_edge_sh"] = None if sh is None else str(sh)
        if isinstance(sh, int):
            values["irreps_edge_sh"], values["l_max"] = None, sh
        values["feature_irreps_hidden"] = tuple(str(v) for v in values["feature_irreps_hidden"])
    return NequIPConfig(**values)


def with_legacy_zbl_cutoff(
    model_kwargs: dict[str, Any], nequip_version: str | None
) -> dict[str, Any]:
    """Give a ZBL term of nequip < 0.17 the envelope it had there.

    Before nequip 0.17 the ZBL term had no cutoff of its own: it took the model's edge
    envelope, the radial basis' ``polynomial_cutoff_p`` (Allegro without a Bessel basis: 6).
    From 0.17 on it has its own (``polynomial_cutoff_p``, default 6).
    """
    pair = model_kwargs.get("pair_potential")
    if not isinstance(pair, Mapping) or not _older_than(nequip_version, (0, 17)):
        return model_kwargs
    embed = model_kwargs.get("radial_chemical_embed")
    if isinstance(embed, Mapping):  # Allegro
        p = embed.get("polynomial_cutoff_p", 6) if embed.get("_target_") == _BESSEL_EMBED else 6
    else:
        p = model_kwargs.get("polynomial_cutoff_p", 6)
    return {**model_kwargs, "pair_potential": {**pair, "polynomial_cutoff_p": p}}


def _older_than(version: str | None, limit: tuple[int, int]) -> bool:
    try:
        major, minor = (int(part) for part in str(version).split(".")[:2])
    except ValueError:
        return False  # unknown: the current behaviour
    return (major, minor) < limit


REFERENCE_BUILDERS = {
    "allegro.model.AllegroModel": "allegro",
    "allegro.model.allegro_models.AllegroModel": "allegro",
    "nequip.model.NequIPGNNModel": "nequip",
    "nequip.model.nequip_models.NequIPGNNModel": "nequip",
    "nequip.model.PresetNequIPGNNModel": "nequip",
    "nequip.model.nequip_models.PresetNequIPGNNModel": "nequip",
    "nequip.model.FullNequIPGNNModel": "nequip",
    "nequip.model.nequip_models.FullNequIPGNNModel": "nequip",
}
CONFIG_FROM_REFERENCE = {
    "allegro": allegro_config_from_reference,
    "nequip": nequip_config_from_reference,
}


def reference_architecture(model_kwargs: Mapping[str, Any]) -> str:
    """Our architecture name for the reference builder named by ``model_kwargs["_target_"]``."""
    target = model_kwargs.get("_target_")
    if target not in REFERENCE_BUILDERS:
        raise ValueError(
            f"Cannot rebuild reference models made by {target!r}; supported builders are "
            f"{sorted(set(REFERENCE_BUILDERS))}. Without '_target_', pass architecture='allegro' "
            "or 'nequip'."
        )
    return REFERENCE_BUILDERS[target]


def config_from_reference(
    model_kwargs: Mapping[str, Any], architecture: str | None = None
) -> AllegroConfig | NequIPConfig:
    """Our config for a reference builder's arguments (architecture from ``_target_``)."""
    architecture = architecture or reference_architecture(model_kwargs)
    if architecture not in CONFIG_FROM_REFERENCE:
        raise ValueError(
            f"Unknown architecture {architecture!r}; known: {list(CONFIG_FROM_REFERENCE)}."
        )
    return CONFIG_FROM_REFERENCE[architecture](model_kwargs)
