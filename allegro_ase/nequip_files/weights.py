"""Map the reference framework's weights (named by its module paths) onto our models' names.

Each function takes the reference tensors and a model of ours built from the same config
(:mod:`allegro_ase.nequip_files.builders`) and returns a complete state dict for it. Constants
that the reference stores (Clebsch-Gordan coefficients, spline grids, ZBL atomic numbers) are
our own, recomputed from the config.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch

from ..models import AllegroModel, NequIPModel


def allegro_state_dict_from_reference(
    reference: Mapping[str, torch.Tensor], model: AllegroModel, prefix: str = "model.func."
) -> dict[str, torch.Tensor]:
    """Map a reference Allegro state dict onto ``model``'s parameter names and shapes.

    Parameters
    ----------
    reference : mapping
        Reference weights, e.g. a checkpoint's ``state_dict`` with ``prefix`` before each name.
    model : AllegroModel
        A model built from the same config (:mod:`~allegro_ase.nequip_files.builders`).
    prefix : str
        What precedes the reference module paths.

    Returns
    -------
    dict
        A complete state dict for ``model`` (its own buffers for derived constants).
    """
    state = dict(model.state_dict())
    take, mlp = _readers(reference, model, prefix, state)

    if model.config.two_body_embed == "spline":
        state["two_body_embed.pair_weights"] = take(
            "radial_chemical_embed.spline.class_embed.weight"
        )
    else:
        embed = "radial_chemical_embed.type_embed"
        state["two_body_embed.center_embed"] = take(f"{embed}.center_embed.weight")
        state["two_body_embed.neighbor_embed"] = take(f"{embed}.neighbor_embed.weight")
        mlp("two_body_embed.basis_linear", f"{embed}.basis_linear")
        if model.config.bessel_trainable:
            frequencies = take("radial_chemical_embed.bessel_encode.bessel_weights")
            state["bessel.frequencies"] = frequencies
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
        A model built from the same config (:mod:`~allegro_ase.nequip_files.builders`).
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


STATE_DICT_FROM_REFERENCE = {
    "allegro": allegro_state_dict_from_reference,
    "nequip": nequip_state_dict_from_reference,
}
