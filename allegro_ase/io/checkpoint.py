"""Our checkpoint format: plain tensors plus JSON metadata, loaded without running code.

A file is a ``torch.save`` archive of ``{"metadata": <JSON string>, "state_dict": {name: tensor}}``
read back with ``torch.load(weights_only=True)``. The metadata records the architecture, its
config, type names, r_max, dtype, the package version and a sha256 of the content (every
tensor's name, dtype, shape and bytes, then the metadata), so a truncated or edited file is
refused with a clear message. A registry may also pin the sha256 of the whole file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..models import architecture_of, build_model

FORMAT = "allegro-ase-model"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A model file that cannot be trusted or read."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_sha256(state_dict: dict[str, torch.Tensor], metadata: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    body = {key: value for key, value in metadata.items() if key != "content_sha256"}
    digest.update(json.dumps(body, sort_keys=True).encode())
    return digest.hexdigest()


def save_model(model: torch.nn.Module, path: str | os.PathLike) -> str:
    """Write ``model`` to ``path`` (atomically) and return the file's sha256.

    Parameters
    ----------
    model : torch.nn.Module
        A model of this package (it has a ``config``).
    path : path-like
        Destination; the conventional suffix is ``.pt``.
    """
    state_dict = {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture_of(model),
        "config": model.config.to_dict(),
        "type_names": list(model.type_names),
        "r_max": model.r_max,
        "model_dtype": model.config.model_dtype,
        "package_version": __version__,
    }
    metadata["content_sha256"] = _content_sha256(state_dict, metadata)
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    torch.save(
        {"metadata": json.dumps(metadata, sort_keys=True), "state_dict": state_dict}, partial
    )
    os.replace(partial, path)
    return file_sha256(path)


def read_metadata(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read and verify a checkpoint's metadata and tensors, without building the model."""
    what_to_do = "Re-download or re-export the model file."
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch raises many types for damaged archives
        raise CheckpointError(
            f"{path} is not a readable allegro-ase model file (truncated, corrupt, or a file "
            f"that would need code execution to load): {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}. {what_to_do}"
        ) from error
    if not isinstance(payload, dict) or set(payload) != {"metadata", "state_dict"}:
        raise CheckpointError(f"{path} is not an allegro-ase model file. {what_to_do}")
    try:
        metadata = json.loads(payload["metadata"])
    except (TypeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} has unreadable metadata ({error}). {what_to_do}") from error
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format {metadata.get('format')!r} version "
            f"{metadata.get('format_version')!r}; this package reads {FORMAT!r} version "
            f"{FORMAT_VERSION}."
        )
    state_dict = payload["state_dict"]
    if _content_sha256(state_dict, metadata) != metadata.get("content_sha256"):
        raise CheckpointError(
            f"{path} has been modified since it was written: its content does not match the "
            f"checksum recorded inside it. {what_to_do}"
        )
    return metadata, state_dict


def load_model(path: str | os.PathLike, sha256: str | None = None) -> torch.nn.Module:
    """Load a model written by :func:`save_model`.

    Parameters
    ----------
    path : path-like
        The model file.
    sha256 : str or None
        Expected sha256 of the whole file (from a registry); checked before reading.

    Returns
    -------
    torch.nn.Module
        The model, on the CPU, in eval mode.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"No such model file: {os.fspath(path)!r}. Give the path of a model saved by "
            "allegro-ase (save_model, allegro-ase train); for a shipped or downloadable model "
            "use AllegroCalculator.from_pretrained(name) (`allegro-ase models list`), for a "
            "reference-framework file from_nequip(path)."
        )
    if sha256 is not None:
        found = file_sha256(path)
        if found != sha256.lower():
            raise CheckpointError(
                f"sha256 mismatch for {path}: expected {sha256}, found {found}. The file is "
                "damaged or not the one the registry lists; delete it and fetch it again."
            )
    metadata, state_dict = read_metadata(path)
    try:
        model = build_model(metadata["architecture"], metadata["config"])
        model.load_state_dict(state_dict, strict=True)
    except (KeyError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} does not describe a valid model: {error}") from error
    return model.eval()
