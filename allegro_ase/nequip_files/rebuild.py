"""Rebuild the model of a ``.ckpt`` or ``.nequip.zip`` natively: architecture, then weights.

The architecture comes from the builder arguments in the file's config (through wrappers,
:mod:`~allegro_ase.nequip_files.wrappers`) or, for a package, from its pickled module tree
(:mod:`~allegro_ase.nequip_files.module_tree`). A package whose config names a builder is
read both ways and the two must agree; one made through wrappers (a fine-tuned model) is read
from its tree. The weights are then mapped onto our parameter names
(:mod:`~allegro_ase.nequip_files.weights`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..models import ARCHITECTURES
from ..nn.scale_shift import per_type_values
from .builders import config_from_reference, reference_architecture, with_legacy_zbl_cutoff
from .checkpoint import read_checkpoint
from .kinds import COMPILED_KINDS, NequIPFileError, nequip_file_kind
from .module_tree import TreeError, builder_kwargs_from_tree
from .package import PACKAGE_PREFIX, check_metadata, read_package
from .weights import STATE_DICT_FROM_REFERENCE
from .wrappers import FROM_FILE, builder_kwargs

logger = logging.getLogger(__name__)
_WEIGHT_CARRIED = {
    "per_type_energy_scales", "per_type_energy_shifts", "per_type_energy_scales_trainable",
    "per_type_energy_shifts_trainable", "avg_num_neighbors", "per_edge_type_cutoff", "seed",
}  # fmt: skip


def model_from_reference(
    model_kwargs: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    prefix: str = "model.func.",
    architecture: str | None = None,
) -> torch.nn.Module:
    """Rebuild a reference Allegro or NequIP model natively, with its weights (eval mode).

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
    model = ARCHITECTURES[architecture][1](config_from_reference(model_kwargs, architecture))
    model.load_state_dict(STATE_DICT_FROM_REFERENCE[architecture](state_dict, model, prefix))
    return model.eval()


def load_nequip_model(path: str | os.PathLike) -> torch.nn.Module:
    """Rebuild the model of a ``.ckpt`` or ``.nequip.zip`` file natively (CPU, eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No such reference model file: {path}. Give the path of a .ckpt (nequip-train) or "
            ".nequip.zip (nequip-package), or a nequip.net id such as "
            "'nequip.net:mir-group/NequIP-OAM-L:0.1'."
        )
    kind = nequip_file_kind(path)
    if kind in COMPILED_KINDS:
        raise NequIPFileError(f"{path.name} is a compiled model; use load_compiled_model.")
    if kind == "checkpoint":
        model_kwargs, weights, prefix = read_checkpoint(path, architecture_of_file)
    else:
        model_kwargs, weights, prefix = package_contents(path)
    try:
        return model_from_reference(model_kwargs, weights, prefix)
    except (KeyError, ValueError, RuntimeError) as error:
        raise NequIPFileError(f"Cannot rebuild the model of {path.name}: {error}") from error


def architecture_of_file(path: Path) -> dict[str, Any]:
    """Builder arguments of another reference file (the base model of a fine-tuning run)."""
    if nequip_file_kind(path) == "checkpoint":
        return read_checkpoint(path, architecture_of_file)[0]
    if nequip_file_kind(path) == "package":
        return package_contents(path)[0]
    raise NequIPFileError(f"{path.name}: only a .ckpt or .nequip.zip can be a base model here.")


class _WrappedFile(Exception):
    """The config wraps another file's model; the package's own module tree is used."""


def _do_not_follow(path: Path) -> dict[str, Any]:
    raise _WrappedFile(path)


def package_contents(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """Builder arguments (config, cross-checked by the module tree), weights and their prefix."""
    section, graph_model, weights, versions = read_package(path)
    try:
        tree_kwargs = builder_kwargs_from_tree(graph_model)
    except (TreeError, KeyError, TypeError, AttributeError, IndexError) as error:
        tree_kwargs, tree_error = None, error
    try:
        config_kwargs = builder_kwargs(section, path, _do_not_follow)
        reference_architecture(config_kwargs)
        config_kwargs = with_legacy_zbl_cutoff(config_kwargs, versions.get("nequip"))
    except (_WrappedFile, NequIPFileError, ValueError) as error:
        config_kwargs, config_error = None, error
    if config_kwargs is None and tree_kwargs is None:
        raise NequIPFileError(
            f"Cannot rebuild the model of {path.name}: its module tree holds {tree_error}, and "
            f"its config {_config_failure(config_error, section)}."
        )
    if config_kwargs is None:
        logger.info("%s: architecture read from the packaged module tree.", path.name)
        return tree_kwargs, weights, PACKAGE_PREFIX
    check_metadata(graph_model.state.get("_metadata") or {}, config_kwargs, path)
    if tree_kwargs is None:
        logger.warning("%s: module tree not read (%s); using its config.", path.name, tree_error)
    else:
        cross_check(config_kwargs, tree_kwargs, path)
    return config_kwargs, weights, PACKAGE_PREFIX


def _config_failure(error: Exception, section: Any) -> str:
    if isinstance(error, _WrappedFile):
        target = section.get("_target_") if isinstance(section, Mapping) else section
        return f"wraps another file's model ({target}, {sorted(FROM_FILE)})"
    return f"cannot be used: {error}"


def cross_check(config_kwargs: Mapping, tree_kwargs: Mapping, path: Path) -> None:
    """Refuse a package whose config and module tree describe different models."""
    config, tree = (config_from_reference(kw) for kw in (config_kwargs, tree_kwargs))
    if type(config) is not type(tree):
        raise NequIPFileError(
            f"{path.name}: its config builds {config.label} but its module tree is {tree.label}; "
            "the archive was altered."
        )
    ours, theirs = _effective(config), _effective(tree)
    different = [
        f"{key}: config {ours[key]!r} vs tree {theirs.get(key)!r}"
        for key in ours
        if not _close(ours[key], theirs.get(key))
    ]
    names = config.type_names
    averages = [per_type_values(c.avg_num_neighbors, names, 1.0) for c in (config, tree)]
    if not torch.allclose(*averages, rtol=1e-6):
        different.append(
            f"avg_num_neighbors: {config.avg_num_neighbors} vs {tree.avg_num_neighbors}"
        )
    if not torch.equal(config.cutoff_matrix(), tree.cutoff_matrix()):
        different.append("per_edge_type_cutoff")
    if different:
        raise NequIPFileError(
            f"{path.name}: its config and its packaged module tree describe different models "
            f"({'; '.join(different)}); the archive was altered or is damaged."
        )


def _close(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, float) and isinstance(theirs, float):
        return math.isclose(ours, theirs, rel_tol=1e-9)
    return ours == theirs


def _effective(config: Any) -> dict[str, Any]:
    """Return the architecture a config builds, with equivalent spellings made equal.

    Values the weights carry (scales, shifts, cutoffs, averages) are left out; an MLP without
    hidden layers has no width or nonlinearity; NequIP's sizes become per-layer irreps and
    radial MLPs, and its self-connection/residual flags the per-layer switches they give.
    """
    values = {k: v for k, v in config.to_dict().items() if k not in _WEIGHT_CARRIED}
    for key in [k for k in values if k.endswith("_depth")]:
        if values[key] == 0 and isinstance(values[key], int):
            values[key.replace("_depth", "_width")] = None
            values[key.replace("hidden_layers_depth", "nonlinearity")] = None
    if hasattr(config, "embed_dim"):  # Allegro: an unset embedding size is num_scalar_features
        values["radial_chemical_embed_dim"] = config.embed_dim
    pair = values.get("pair_potential")
    if pair:
        values["pair_potential"] = {
            **pair,
            "chemical_species": pair["chemical_species"] or list(config.type_names),
        }
    if not hasattr(config, "layer_irreps"):
        return values
    for key in ("num_features", "radial_mlp_depth", "radial_mlp_width", "l_max", "parity",
                "num_layers", "type_embed_num_features", "feature_irreps_hidden",
                "irreps_edge_sh", "convnet_sc", "convnet_resnet", "learnable_shift",
                "readout_mlp_hidden_layers_width"):  # fmt: skip
        values.pop(key, None)
    layers = config.layer_irreps
    first_too = config.learnable_shift
    values["layers"] = [
        (str(irreps), depth, width if depth else None, sc, resnet)
        for index, (irreps, depth, width) in enumerate(
            zip(layers, config.per_layer("radial_mlp_depth"), config.per_layer("radial_mlp_width"), strict=True)
        )
        for sc, resnet in [(
            config.convnet_sc and (first_too or index > 0),
            config.convnet_resnet and (first_too or index > 0),
        )]
    ]  # fmt: skip
    values["edge_sh"] = str(config.edge_sh_irreps)
    values["type_embed"] = config.type_embed_dim
    if config.readout_mlp_hidden_layers_depth:
        values["readout_width"] = config.readout_mlp_hidden_layers_width or layers[-1].dim
    return values
