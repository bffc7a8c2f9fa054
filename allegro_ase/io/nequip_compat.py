"""Rebuild models of the reference framework (nequip 0.19 / nequip-allegro 0.8) natively.

The reference builds Allegro and NequIP from a dictionary of keyword arguments (the ``model``
section of its config, stored resolved in checkpoints, with the builder's name under
``_target_``) and names its weights by module path. These functions translate both into this
package's config and parameter names; no nequip code is imported or executed.
:func:`model_from_reference` picks the architecture from the builder name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..models import ARCHITECTURES, AllegroConfig, AllegroModel, NequIPConfig, NequIPModel

_BESSEL_EMBED = "allegro.nn.TwoBodyBesselScalarEmbed"
_IGNORED_KEYS = {"_target_", "compile_mode", "do_derivatives"}
_SAME_NAME_KEYS = {
    "type_names", "r_max", "l_max", "parity", "num_layers", "num_scalar_features",
    "num_tensor_features", "radial_chemical_embed_dim", "tp_path_channel_coupling",
    "avg_num_neighbors", "per_edge_type_cutoff", "per_type_energy_scales",
    "per_type_energy_shifts", "per_type_energy_scales_trainable",
    "per_type_energy_shifts_trainable", "model_dtype", "seed", "weight_individual_irreps",
    "forward_normalize",
    *(f"{mlp}_mlp_hidden_layers_{what}" for mlp in ("scalar_embed", "allegro", "readout")
      for what in ("depth", "width")),
}  # fmt: skip
_NONLINEARITY_KEYS = {f"{mlp}_mlp_nonlinearity" for mlp in ("scalar_embed", "allegro", "readout")}


def allegro_config_from_reference(model_kwargs: Mapping[str, Any]) -> AllegroConfig:
    """Translate the reference ``AllegroModel`` builder arguments into an :class:`AllegroConfig`.

    Raises
    ------
    ValueError
        Naming every argument or module this package does not implement.
    """
    values: dict[str, Any] = {}
    unsupported = []
    for key, value in model_kwargs.items():
        if key in _IGNORED_KEYS:
            continue
        if key in _SAME_NAME_KEYS:
            values[key] = value
        elif key in _NONLINEARITY_KEYS:
            values[key] = None if value in (None, "None", "null") else value
        elif key == "radial_chemical_embed":
            target = value.get("_target_")
            if target != _BESSEL_EMBED:
                unsupported.append(f"radial_chemical_embed {target!r} (only {_BESSEL_EMBED})")
                continue
            values["num_bessels"] = value.get("num_bessels", 8)
            values["bessel_trainable"] = value.get("bessel_trainable", False)
            values["polynomial_cutoff_p"] = value.get("polynomial_cutoff_p", 6)
        elif key == "pair_potential" and value is None:
            continue
        else:
            unsupported.append(f"{key}={value!r}")
    if unsupported:
        raise ValueError(
            "This reference Allegro model uses options allegro-ase does not implement: "
            + "; ".join(unsupported)
        )
    return AllegroConfig(**values)


def allegro_state_dict_from_reference(
    reference: Mapping[str, torch.Tensor], model: AllegroModel, prefix: str = "model.func."
) -> dict[str, torch.Tensor]:
    """Map a reference Allegro state dict onto ``model``'s parameter names and shapes.

    Parameters
    ----------
    reference : mapping
        Reference weights, e.g. a checkpoint's ``state_dict`` with ``prefix`` before each name.
    model : AllegroModel
        A model built from :func:`allegro_config_from_reference` of the same config.
    prefix : str
        What precedes the reference module paths.

    Returns
    -------
    dict
        A complete state dict for ``model`` (its own buffers for derived constants).
    """
    state = dict(model.state_dict())
    take, mlp = _readers(reference, model, prefix, state)

    embed = "radial_chemical_embed.type_embed"
    state["two_body_embed.center_embed"] = take(f"{embed}.center_embed.weight")
    state["two_body_embed.neighbor_embed"] = take(f"{embed}.neighbor_embed.weight")
    mlp("two_body_embed.basis_linear", f"{embed}.basis_linear")
    if model.config.bessel_trainable:
        state["bessel.frequencies"] = take("radial_chemical_embed.bessel_encode.bessel_weights")
    mlp("scalar_embed_mlp", "scalar_embed_mlp.mlp_module")
    mlp("sh_embed_linear", "tensor_embed.env_embed_linear")
    mlp("first_layer_projection", "allegro.first_layer_env_embed_projection")
    for layer, tensor_product in enumerate(model.tensor_products):
        mlp(f"latents.{layer}", f"allegro.latents.{layer}")
        weights = take(f"allegro.tps.{layer}.weights")
        state[f"tensor_products.{layer}.weights"] = weights.reshape(tensor_product.weights.shape)
    mlp("readout", "edge_readout.mlp_module")
    _scale_shift(state, take, len(model.type_names))
    return state


def _readers(
    reference: Mapping[str, torch.Tensor],
    model: torch.nn.Module,
    prefix: str,
    state: dict[str, torch.Tensor],
) -> tuple[Callable[[str], torch.Tensor], Callable[[str, str], None]]:
    """``take(name)``: one reference tensor; ``mlp(ours, theirs)``: copy an MLP's weights.

    A reference MLP stores its weights as ``mlp.<k>.weight`` of a sequence that interleaves
    activations, or as ``mlp.weights.<k>`` when it is a product of linear maps.
    """

    def take(name: str) -> torch.Tensor:
        if prefix + name not in reference:
            raise KeyError(f"The reference weights have no {prefix + name!r}.")
        return reference[prefix + name]

    def mlp(ours: str, theirs: str) -> None:
        pattern = re.compile(
            re.escape(f"{prefix}{theirs}.mlp.") + r"(?:weights\.(\d+)|(\d+)\.weight)"
        )
        found = sorted(
            (int(match[1] or match[2]), value)
            for key, value in reference.items()
            if (match := pattern.fullmatch(key))
        )
        expected = len(getattr_path(model, ours).weights)
        if len(found) != expected:
            raise KeyError(
                f"The reference MLP {prefix + theirs!r} has {len(found)} weight matrices; the "
                f"rebuilt model expects {expected}."
            )
        for layer, (_, value) in enumerate(found):
            state[f"{ours}.weights.{layer}"] = value

    return take, mlp


def _scale_shift(
    state: dict[str, torch.Tensor], take: Callable[[str], torch.Tensor], num_types: int
) -> None:
    for what in ("scales", "shifts"):
        values = take(f"per_type_energy_scale_shift.{what}").reshape(-1)
        if values.numel():
            state[f"scale_shift.{what}"] = values.expand(num_types).to(torch.float64).clone()


def getattr_path(module: torch.nn.Module, path: str) -> torch.nn.Module:
    """Submodule at a dotted path."""
    for name in path.split("."):
        module = getattr(module, name)
    return module


_NEQUIP_PRESETS = {
    "S": dict(num_layers=2, l_max=1, num_features=[128, 64]),
    "M": dict(num_layers=4, l_max=2, num_features=[128, 64, 32]),
    "L": dict(num_layers=6, l_max=3, num_features=[128, 64, 32, 32]),
    "XL": dict(num_layers=6, l_max=4, num_features=[320, 96, 64, 32, 32]),
}
_NEQUIP_PRESET_SHARED = dict(
    parity=False, type_embed_num_features=32, radial_mlp_depth=1, radial_mlp_width=128
)
_NEQUIP_SAME_NAME_KEYS = {
    "type_names", "r_max", "l_max", "parity", "num_layers", "num_features",
    "type_embed_num_features", "radial_mlp_depth", "radial_mlp_width",
    "readout_mlp_hidden_layers_depth", "readout_mlp_hidden_layers_width", "num_bessels",
    "bessel_trainable", "polynomial_cutoff_p", "per_edge_type_cutoff", "avg_num_neighbors",
    "per_type_energy_scales", "per_type_energy_shifts", "per_type_energy_scales_trainable",
    "per_type_energy_shifts_trainable", "convnet_sc", "convnet_resnet", "learnable_shift",
    "convnet_nonlinearity_scalars", "convnet_nonlinearity_gates", "model_dtype", "seed",
}  # fmt: skip
_NEQUIP_DEFAULT_ONLY = {"categorical_graph_field_embed": None, "pair_potential": None,
                        "convnet_nonlinearity_type": "gate"}  # fmt: skip


def nequip_config_from_reference(model_kwargs: Mapping[str, Any]) -> NequIPConfig:
    """Translate reference ``NequIPGNNModel`` (or ``PresetNequIPGNNModel``) arguments.

    Raises
    ------
    ValueError
        Naming every argument this package does not implement.
    """
    kwargs = dict(model_kwargs)
    if "preset" in kwargs:
        preset = str(kwargs.pop("preset")).upper()
        if preset not in _NEQUIP_PRESETS:
            raise ValueError(f"Unknown NequIP preset {preset!r}; known: {list(_NEQUIP_PRESETS)}.")
        kwargs = {**_NEQUIP_PRESET_SHARED, **_NEQUIP_PRESETS[preset], **kwargs}
    values: dict[str, Any] = {}
    unsupported = []
    for key, value in kwargs.items():
        if key in _IGNORED_KEYS:
            continue
        if key in _NEQUIP_SAME_NAME_KEYS:
            values[key] = value
        elif key == "readout_mlp_nonlinearity":
            values[key] = None if value in (None, "None", "null") else value
        elif key in _NEQUIP_DEFAULT_ONLY and value == _NEQUIP_DEFAULT_ONLY[key]:
            continue
        else:
            unsupported.append(f"{key}={value!r}")
    if unsupported:
        raise ValueError(
            "This reference NequIP model uses options allegro-ase does not implement: "
            + "; ".join(unsupported)
        )
    return NequIPConfig(**values)


def nequip_state_dict_from_reference(
    reference: Mapping[str, torch.Tensor], model: NequIPModel, prefix: str = "model.func."
) -> dict[str, torch.Tensor]:
    """Map a reference NequIP state dict onto ``model``'s parameter names.

    The e3nn modules (linears, self-connections) are built as the reference builds them, so
    their flat weight vectors are copied as they are; their constants are our own.

    Parameters
    ----------
    reference : mapping
        Reference weights, with ``prefix`` before each module path.
    model : NequIPModel
        A model built from :func:`nequip_config_from_reference` of the same config.
    prefix : str
        What precedes the reference module paths.

    Returns
    -------
    dict
        A complete state dict for ``model``.
    """
    state = dict(model.state_dict())
    take, mlp = _readers(reference, model, prefix, state)
    state["type_embed"] = take("type_embed.embed_module.weight")
    if model.config.bessel_trainable:
        state["bessel.frequencies"] = take("bessel_encode.bessel_weights")
    for index in range(len(model.layers)):
        ours, theirs = f"layers.{index}.conv", f"layer{index}_convnet.conv"
        for name in ("linear_1", "linear_2", "sc"):
            if f"{ours}.{name}.weight" in state:
                state[f"{ours}.{name}.weight"] = take(f"{theirs}.{name}.weight")
        mlp(f"{ours}.edge_mlp", f"{theirs}.edge_mlp")
    mlp("readout", "per_atom_energy_readout.mlp_module")
    _scale_shift(state, take, len(model.type_names))
    return state


REFERENCE_BUILDERS = {
    "allegro.model.AllegroModel": "allegro",
    "nequip.model.NequIPGNNModel": "nequip",
    "nequip.model.PresetNequIPGNNModel": "nequip",
}
# architecture -> (reference kwargs -> our config, reference state dict -> ours)
_FROM_REFERENCE = {
    "allegro": (allegro_config_from_reference, allegro_state_dict_from_reference),
    "nequip": (nequip_config_from_reference, nequip_state_dict_from_reference),
}


def reference_architecture(model_kwargs: Mapping[str, Any]) -> str:
    """Our architecture name for the reference builder named by ``model_kwargs["_target_"]``."""
    target = model_kwargs.get("_target_")
    if target not in REFERENCE_BUILDERS:
        raise ValueError(
            f"Cannot rebuild reference models made by {target!r}; supported builders are "
            f"{sorted(REFERENCE_BUILDERS)}. Without '_target_', pass architecture='allegro' or "
            "'nequip'."
        )
    return REFERENCE_BUILDERS[target]


def model_from_reference(
    model_kwargs: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    prefix: str = "model.func.",
    architecture: str | None = None,
) -> torch.nn.Module:
    """Rebuild a reference Allegro or NequIP model natively, with its weights.

    Parameters
    ----------
    model_kwargs : mapping
        The reference builder's arguments, with its name under ``_target_``.
    state_dict : mapping
        The reference weights, with ``prefix`` before each module path.
    prefix : str
        What precedes the reference module paths.
    architecture : str or None
        ``"allegro"`` or ``"nequip"``; None reads it from ``_target_``.
    """
    architecture = architecture or reference_architecture(model_kwargs)
    if architecture not in _FROM_REFERENCE:
        raise ValueError(f"Unknown architecture {architecture!r}; known: {list(_FROM_REFERENCE)}.")
    config_from_reference, state_dict_from_reference = _FROM_REFERENCE[architecture]
    model = ARCHITECTURES[architecture][1](config_from_reference(model_kwargs))
    model.load_state_dict(state_dict_from_reference(state_dict, model, prefix))
    return model.eval()
