"""Load files of the reference framework (nequip 0.19 / nequip-allegro 0.8) without nequip.

=====================  ==============================  =====================================
file                   what it is                      how it is read
=====================  ==============================  =====================================
``*.ckpt``             Lightning training checkpoint   ``torch.load(weights_only=True)``;
                                                       builder config from its hyper-
                                                       parameters; EMA weights when kept
``*.nequip.zip``       ``nequip-package`` archive      zip + YAML config + pickled weights
                                                       through a whitelist unpickler
``*.nequip.pth``       TorchScript (``nequip-compile``)  compiled code: opt-in only
``*.nequip.pt2``       AOTInductor (``nequip-compile``)  compiled code: opt-in only
=====================  ==============================  =====================================

Checkpoints and packages are rebuilt as this package's native models
(:func:`~allegro_ase.io.nequip_compat.model_from_reference`); no code from the file runs.
Compiled files are wrapped by :mod:`allegro_ase.io.nequip_compiled`.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from .nequip_compat import model_from_reference
from .package_pickle import RestrictedUnpickler, Stub, module_tensors, submodule_state

KINDS = {
    ".ckpt": "checkpoint",
    ".nequip.zip": "package",
    ".nequip.pth": "torchscript",
    ".nequip.pt2": "aotinductor",
}
COMPILED_KINDS = ("torchscript", "aotinductor")
_CKPT_PREFIX = "model.sole_model."
_EMA_MODULES = {"nequip.train.EMALightningModule", "nequip.train.EMAConFIGLightningModule"}
_RAW_MODULES = {"nequip.train.NequIPLightningModule", "nequip.train.ConFIGLightningModule"}
_WRAPPERS = {
    "nequip.model.ModelFromCheckpoint",
    "nequip.model.ModelFromPackage",
    "nequip.model.modify",
}
_BUFFER_NAMES = {"_empty", "_rmax_recip", "w3j", "output_mask", "norm_const"}


class NequIPFileError(ValueError):
    """A reference-framework file that cannot be read safely or rebuilt."""


def nequip_file_kind(path: str | os.PathLike) -> str:
    """``"checkpoint"``, ``"package"``, ``"torchscript"`` or ``"aotinductor"``, by file name."""
    name = Path(path).name
    for suffix, kind in KINDS.items():
        if name.endswith(suffix):
            return kind
    raise NequIPFileError(
        f"{name!r} is not a file of the reference framework; expected a name ending in "
        f"{', '.join(KINDS)}. Models saved by allegro-ase load with AllegroCalculator.from_file."
    )


def load_nequip_model(path: str | os.PathLike) -> torch.nn.Module:
    """Rebuild the model of a ``.ckpt`` or ``.nequip.zip`` file natively (CPU, eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such reference model file: {path}")
    kind = nequip_file_kind(path)
    if kind in COMPILED_KINDS:
        raise NequIPFileError(f"{path.name} is a compiled model; use load_compiled_model.")
    model_kwargs, weights, prefix = (read_checkpoint if kind == "checkpoint" else read_package)(
        path
    )
    try:
        return model_from_reference(model_kwargs, weights, prefix)
    except (KeyError, ValueError, RuntimeError) as error:
        raise NequIPFileError(f"Cannot rebuild the model of {path.name}: {error}") from error


def _unresolved(value: Any, where: str = "model") -> list[str]:
    """Config entries still holding an OmegaConf ``${...}`` interpolation."""
    if isinstance(value, str):
        return [f"{where}={value!r}"] if "${" in value else []
    if isinstance(value, Mapping):
        return [bad for k, v in value.items() for bad in _unresolved(v, f"{where}.{k}")]
    if isinstance(value, list | tuple):
        return [bad for k, v in enumerate(value) for bad in _unresolved(v, f"{where}[{k}]")]
    return []


def _model_config(model_kwargs: Any, path: Path) -> dict[str, Any]:
    if not isinstance(model_kwargs, Mapping) or "_target_" not in model_kwargs:
        raise NequIPFileError(f"{path.name} holds no model builder config (no model._target_).")
    if model_kwargs["_target_"] in _WRAPPERS:
        raise NequIPFileError(
            f"The model of {path.name} is made by {model_kwargs['_target_']} (fine-tuned from "
            "another file, or wrapped in modifiers), so the file does not record the "
            "architecture allegro-ase needs to rebuild it. Load the original .ckpt or "
            ".nequip.zip, or a compiled file of this model with allow_compiled=True."
        )
    unresolved = _unresolved(model_kwargs)
    if unresolved:
        raise NequIPFileError(
            f"The model config in {path.name} still has interpolations that need the training "
            f"run (data statistics) to resolve: {'; '.join(unresolved)}. nequip-train stores "
            "them resolved; re-save the file from a finished nequip-train run."
        )
    return dict(model_kwargs)


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """Builder config, weights (EMA where the reference would use them) and their prefix."""
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
    try:
        hyper = checkpoint["hyper_parameters"]
        state = checkpoint["state_dict"]
        module = hyper.get("info_dict", {}).get("training_module", {}).get("_target_")
    except (KeyError, TypeError, AttributeError) as error:
        raise NequIPFileError(
            f"{path.name} is not a nequip-train checkpoint (no hyper_parameters/state_dict)."
        ) from error
    model_kwargs = _model_config(hyper.get("model"), path)
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
    return model_kwargs, state, _CKPT_PREFIX + "model.func."


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
        if key.startswith(_CKPT_PREFIX) and is_reference_parameter(key, value, model_kwargs)
    ]
    shapes = [tuple(state[name].shape) for name in names]
    if shapes != [tuple(weight.shape) for weight in ema]:
        raise NequIPFileError(
            f"{path.name} has {len(ema)} EMA weights but its model has {len(names)} parameters "
            "of other shapes, so allegro-ase cannot tell which EMA copy belongs to which "
            "parameter. Package it with `nequip-package build` and load the .nequip.zip."
        )
    return {**state, **dict(zip(names, ema, strict=True))}


def _archive_root(archive: zipfile.ZipFile, path: Path) -> str:
    roots = {name.split("/", 1)[0] for name in archive.namelist()}
    root = roots.pop() if len(roots) == 1 else ""
    if f"{root}/model/package_metadata.txt" not in archive.namelist():
        raise NequIPFileError(f"{path.name} is a zip archive but not a nequip-package file.")
    return root


def read_package(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """Builder config and weights of a ``.nequip.zip``, read without running its code.

    The config is ``training_module.model`` of the archive's ``model/config.yaml``; the weights
    are those of the pickled ``eager`` model (the EMA weights, when training kept them).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            root = _archive_root(archive, path)
            metadata = yaml.safe_load(archive.read(f"{root}/model/package_metadata.txt"))
            config = yaml.safe_load(archive.read(f"{root}/model/config.yaml"))
            models = RestrictedUnpickler(archive, root, "model/eager_model.pkl").load()
    except pickle.UnpicklingError as error:
        raise NequIPFileError(f"{path.name} is refused: {error}") from error
    except (zipfile.BadZipFile, KeyError, EOFError, OSError, yaml.YAMLError) as error:
        raise NequIPFileError(
            f"{path.name} is not a readable nequip-package archive (truncated, damaged or "
            f"missing a member): {type(error).__name__}: {error}"
        ) from error
    if not isinstance(metadata, Mapping) or metadata.get("package_version_id") not in (1, 2):
        raise NequIPFileError(
            f"{path.name} has package format {metadata!r:.80}; allegro-ase reads nequip-package "
            "formats 1 and 2 (nequip 0.7-0.19)."
        )
    training_module = (config or {}).get("training_module") or {}
    model_kwargs = _model_config(training_module.get("model"), path)
    if not isinstance(models, Stub):
        raise NequIPFileError(f"{path.name}: model/eager_model.pkl does not hold a module.")
    try:
        weights = module_tensors(models)
        graph_model = submodule_state(models, "sole_model")
    except (pickle.UnpicklingError, KeyError, TypeError, AttributeError) as error:
        raise NequIPFileError(
            f"{path.name}: the pickled model is not the single 'sole_model' module tree "
            f"nequip-package writes ({error})."
        ) from error
    _check_metadata(graph_model.get("_metadata") or {}, model_kwargs, path)
    return model_kwargs, weights, "sole_model.model.func."


def _check_metadata(metadata: Mapping[str, str], model_kwargs: Mapping, path: Path) -> None:
    """Refuse a package whose model metadata disagrees with the config it is rebuilt from."""
    expected = {
        "type_names": " ".join(model_kwargs.get("type_names", [])),
        "r_max": float(model_kwargs.get("r_max", 0.0)),
        "model_dtype": model_kwargs.get("model_dtype"),
    }
    found = {
        "type_names": metadata.get("type_names"),
        "r_max": float(metadata.get("r_max", "nan")),
        "model_dtype": metadata.get("model_dtype"),
    }
    if found != expected:
        raise NequIPFileError(
            f"{path.name}: the packaged model's metadata {found} does not match its config "
            f"{expected}; the archive was altered."
        )
