"""Read a ``nequip-package`` archive (``.nequip.zip``) without running any of its code."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from .kinds import NequIPFileError
from .unpickler import RestrictedUnpickler, Stub, module_tensors


def _archive_root(archive: zipfile.ZipFile, path: Path) -> str:
    roots = {name.split("/", 1)[0] for name in archive.namelist()}
    root = roots.pop() if len(roots) == 1 else ""
    if f"{root}/model/package_metadata.txt" not in archive.namelist():
        raise NequIPFileError(f"{path.name} is a zip archive but not a nequip-package file.")
    return root


PACKAGE_PREFIX = "sole_model.model.func."


def read_package(path: Path) -> tuple[Any, Stub, dict[str, torch.Tensor], dict[str, str]]:
    """Return the config's model section, module tree, weights and versions; no code runs.

    The section is ``training_module.model`` of the archive's ``model/config.yaml`` (a builder
    or a wrapper); the tree is the pickled ``eager`` model's ``GraphModel`` as inert records;
    the weights are its tensors (the EMA weights, when training kept them), named with
    ``PACKAGE_PREFIX`` before the module path; the versions are those of the packaging run
    (``{"nequip": "0.13.0", ...}``).
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
    if not isinstance(models, Stub):
        raise NequIPFileError(f"{path.name}: model/eager_model.pkl does not hold a module.")
    try:
        weights = module_tensors(models)
        graph_model = models.state["_modules"]["sole_model"]
    except (pickle.UnpicklingError, KeyError, TypeError, AttributeError) as error:
        raise NequIPFileError(
            f"{path.name}: the pickled model is not the single 'sole_model' module tree "
            f"nequip-package writes ({error})."
        ) from error
    if not isinstance(graph_model, Stub) or not isinstance(graph_model.state, dict):
        raise NequIPFileError(f"{path.name}: 'sole_model' is not a pickled module.")
    return training_module.get("model"), graph_model, weights, (metadata.get("versions") or {})


def check_metadata(metadata: Mapping[str, str], model_kwargs: Mapping, path: Path) -> None:
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
