"""Rebuild models of the reference framework (nequip 0.19 / nequip-allegro 0.8) natively.

The reference builds Allegro from a dictionary of keyword arguments (the ``model`` section of
its config, stored resolved in checkpoints) and names its weights by module path. These
functions translate both into this package's config and parameter names; no nequip code is
imported or executed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..models import AllegroConfig, AllegroModel

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

    def take(name: str) -> torch.Tensor:
        if prefix + name not in reference:
            raise KeyError(f"The reference weights have no {prefix + name!r}.")
        return reference[prefix + name]

    def mlp(ours: str, theirs: str) -> None:
        for layer in range(len(getattr_path(model, ours).weights)):
            state[f"{ours}.weights.{layer}"] = take(f"{theirs}.mlp.{2 * layer}.weight")

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
    num_types = len(model.type_names)
    for what in ("scales", "shifts"):
        values = take(f"per_type_energy_scale_shift.{what}").reshape(-1)
        if values.numel():
            state[f"scale_shift.{what}"] = values.expand(num_types).to(torch.float64).clone()
    return state


def getattr_path(module: torch.nn.Module, path: str) -> torch.nn.Module:
    """Submodule at a dotted path."""
    for name in path.split("."):
        module = getattr(module, name)
    return module


def allegro_from_reference(
    model_kwargs: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    prefix: str = "model.func.",
) -> AllegroModel:
    """Build a native :class:`AllegroModel` holding a reference model's weights."""
    model = AllegroModel(allegro_config_from_reference(model_kwargs))
    model.load_state_dict(allegro_state_dict_from_reference(state_dict, model, prefix))
    return model.eval()
