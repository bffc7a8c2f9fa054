"""Read a ``nequip-train`` checkpoint (``.ckpt``) with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .builders import with_legacy_zbl_cutoff
from .kinds import NequIPFileError
from .wrappers import builder_kwargs

CKPT_PREFIX = "model.sole_model."
_EMA_MODULES = {"nequip.train.EMALightningModule", "nequip.train.EMAConFIGLightningModule"}
_RAW_MODULES = {"nequip.train.NequIPLightningModule", "nequip.train.ConFIGLightningModule"}
# buffers the reference persists, told apart from parameters by name
_BUFFER_NAMES = {
    "_empty", "_rmax_recip", "w3j", "output_mask", "norm_const",  # constants
    "atomic_numbers", "_qqr2exesquare",  # ZBL
    "lower", "upper",  # spline grid
}  # fmt: skip


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read the checkpoint's dictionary with ``torch.load(weights_only=True)``."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error)) or re.search(
            r"WeightsUnpickler error: ([^\n]+)", str(error)
        )
        what = found[1] if found else str(error).splitlines()[0]
        raise NequIPFileError(
            f"{path.name} holds objects that only load by running code ({what}). A "
            "plain nequip-train checkpoint holds only tensors and Python primitives; this one "
            "is refused rather than unpickled. If it is yours and trusted, package it with "
            "`nequip-package build` and load the .nequip.zip."
        ) from error
    except Exception as error:  # torch raises many types for damaged archives
        raise NequIPFileError(
            f"{path.name} is not a readable checkpoint (truncated or corrupt): "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from error
    return checkpoint


def read_checkpoint(
    path: Path, read_architecture: Callable[[Path], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """Builder arguments, weights (EMA where the reference would use them) and their prefix.

    ``read_architecture`` gives the builder arguments of another file, for a fine-tuning
    checkpoint whose config wraps another file's model.
    """
    checkpoint = load_checkpoint(path)
    try:
        hyper = checkpoint["hyper_parameters"]
        state = checkpoint["state_dict"]
        module = hyper.get("info_dict", {}).get("training_module", {}).get("_target_")
    except (KeyError, TypeError, AttributeError) as error:
        raise NequIPFileError(
            f"{path.name} is not a nequip-train checkpoint (no hyper_parameters/state_dict)."
        ) from error
    model_kwargs = builder_kwargs(hyper.get("model"), path, read_architecture)
    versions = hyper.get("info_dict", {}).get("versions") or {}
    model_kwargs = with_legacy_zbl_cutoff(model_kwargs, versions.get("nequip"))
    others = {k.split(".")[1] for k in state if k.startswith("model.") and k.count(".") > 1}
    if others != {"sole_model"}:
        raise NequIPFileError(
            f"{path.name} holds the models {sorted(others)}; only single-model checkpoints "
            "('sole_model') can be rebuilt."
        )
    if any(key.startswith("ema.ema_weight_") for key in state):
        state = with_ema_weights(state, model_kwargs, path)
    elif module not in _RAW_MODULES:
        raise NequIPFileError(
            f"{path.name} was trained with {module!r}, whose inference weights are not the "
            f"stored ones (known: {sorted(_RAW_MODULES | _EMA_MODULES)}). Package it with "
            "`nequip-package build` and load the .nequip.zip, which holds the weights to use."
        )
    return model_kwargs, state, CKPT_PREFIX + "model.func."


def is_reference_parameter(name: str, value: torch.Tensor, model_kwargs: Mapping) -> bool:
    """Whether a reference state-dict entry is a parameter (EMA tracks those) or a buffer."""
    leaf = name.rsplit(".", 1)[-1]
    if value.numel() == 0 or leaf in _BUFFER_NAMES or "_w3j" in leaf:
        return False  # e3nn keeps empty weights as buffers; constants are buffers
    if leaf == "bessel_weights":
        embed = model_kwargs.get("radial_chemical_embed") or {}
        return bool(embed.get("bessel_trainable", model_kwargs.get("bessel_trainable", False)))
    if name.endswith("per_type_energy_scale_shift.scales"):
        return bool(model_kwargs.get("per_type_energy_scales_trainable", False))
    if name.endswith("per_type_energy_scale_shift.shifts"):
        return bool(model_kwargs.get("per_type_energy_shifts_trainable", False))
    return True


def with_ema_weights(
    state: Mapping[str, torch.Tensor], model_kwargs: Mapping, path: Path
) -> dict[str, torch.Tensor]:
    """Replace the raw model parameters by the checkpoint's EMA copies.

    The reference keeps ``ema.ema_weight_<k>`` in the order of ``model.parameters()``, which is
    the order of the parameters among the state-dict entries; buffers are told apart by name
    (:func:`is_reference_parameter`) and every EMA tensor must match its parameter's shape.
    """
    extra = state.get("ema._extra_state")
    if isinstance(extra, Mapping) and not extra.get("is_holding_ema_weights", True):
        raise NequIPFileError(
            f"{path.name} was saved while its EMA weights were swapped into the model (the "
            "reference calls such checkpoints corrupted); it is refused."
        )
    ema = []
    while f"ema.ema_weight_{len(ema)}" in state:
        ema.append(state[f"ema.ema_weight_{len(ema)}"])
    names = [
        key
        for key, value in state.items()
        if key.startswith(CKPT_PREFIX) and is_reference_parameter(key, value, model_kwargs)
    ]
    shapes = [tuple(state[name].shape) for name in names]
    if shapes != [tuple(weight.shape) for weight in ema]:
        raise NequIPFileError(
            f"{path.name} has {len(ema)} EMA weights but its model has {len(names)} parameters "
            "of other shapes, so allegro-ase cannot tell which EMA copy belongs to which "
            "parameter. Package it with `nequip-package build` and load the .nequip.zip."
        )
    return {**state, **dict(zip(names, ema, strict=True))}
