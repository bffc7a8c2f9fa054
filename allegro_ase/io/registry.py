"""The model registry file: one JSON file listing pretrained models and their checksums.

Format (``pretrained/registry.json`` in the repository)::

    {"format": "allegro-ase-registry", "format_version": 1, "models": [ENTRY, ...]}

Each entry is a :class:`ModelEntry`; its ``file`` and ``card`` paths are relative to the folder
of the registry file. How entries are found, fetched and cached is :mod:`allegro_ase.zoo`'s job.

An optional second list, ``"nequip_net_models": [NEQUIP_NET_ENTRY, ...]``, names models published
on nequip.net (:class:`NequIPNetEntry`); :mod:`allegro_ase.nequip_files.hub` downloads them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

from .checkpoint import file_sha256, read_metadata

REGISTRY_FORMAT = "allegro-ase-registry"
REGISTRY_FORMAT_VERSION = 1
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ZooError(RuntimeError):
    """A pretrained model that cannot be found, fetched or trusted."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of the registry.

    Parameters
    ----------
    name : str
        Unique name, as passed to :func:`allegro_ase.zoo.resolve` (letters, digits, ``.``, ``_``, ``-``).
    version : str
        Version of the weights (same characters as ``name``).
    description : str
        One line for ``allegro-ase models list``.
    species : tuple of str
        The chemical symbols the model has parameters for.
    r_max : float
        Cutoff radius (Å).
    dtype : str
        Dtype of the weights, ``"float32"`` or ``"float64"``.
    file : str
        The model file, relative to the registry's folder (``/``-separated). A remote model is
        cached under the same base name.
    sha256 : str
        sha256 of the whole model file (64 lowercase hex digits).
    size : int
        Size of the model file (bytes).
    card : str
        The model card (Markdown), relative to the registry's folder.
    url : str or None
        Where to download the file; None for a model shipped with the package.
    root : Path
        The registry's folder (keyword only; not stored in the registry).
    """

    name: str
    version: str
    description: str
    species: tuple[str, ...]
    r_max: float
    dtype: str
    file: str
    sha256: str
    size: int
    card: str
    url: str | None = None
    root: Path = field(kw_only=True, compare=False, repr=False)

    def __post_init__(self):
        for key in ("name", "version"):
            if not _SAFE_NAME.fullmatch(str(getattr(self, key))):
                raise ValueError(
                    f"{key} {getattr(self, key)!r} may use only letters, digits, '.', '_', '-'"
                )
        if not re.fullmatch(r"[0-9a-f]{64}", str(self.sha256)):
            raise ValueError(f"sha256 {self.sha256!r} is not 64 lowercase hex digits")
        if not self.species or not all(isinstance(symbol, str) for symbol in self.species):
            raise ValueError(f"species {self.species!r} must be a non-empty list of symbols")
        if not (isinstance(self.r_max, int | float) and self.r_max > 0):
            raise ValueError(f"r_max {self.r_max!r} must be a positive number (Å)")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype {self.dtype!r} must be 'float32' or 'float64'")
        if not (isinstance(self.size, int) and self.size >= 0):
            raise ValueError(f"size {self.size!r} must be a number of bytes")
        for key in ("file", "card"):
            parts = PurePosixPath(str(getattr(self, key))).parts
            if not parts or parts[0] == "/" or ".." in parts:
                raise ValueError(
                    f"{key} {getattr(self, key)!r} must be a path inside the registry's folder"
                )
        if self.url is not None and not str(self.url).startswith(("https://", "http://")):
            raise ValueError(f"url {self.url!r} must start with https:// or http://")

    @classmethod
    def from_dict(cls, data: dict[str, Any], root: Path) -> ModelEntry:
        """Build an entry from its registry JSON object, rejecting unknown or missing keys."""
        if not isinstance(data, dict):
            raise ValueError(f"an entry is a JSON object, not {type(data).__name__}")
        keys = {item.name for item in fields(cls)} - {"root"}
        unknown, missing = set(data) - keys, keys - {"url"} - set(data)
        if unknown or missing:
            raise ValueError(
                f"unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; an entry has "
                f"the keys {sorted(keys)}"
            )
        if not isinstance(data["species"], list):
            raise ValueError(f"species {data['species']!r} must be a list of chemical symbols")
        return cls(**{**data, "species": tuple(data["species"])}, root=root)

    def to_dict(self) -> dict[str, Any]:
        """Return the entry's registry JSON object (``url`` only when set)."""
        data = {item.name: getattr(self, item.name) for item in fields(self) if item.name != "root"}
        data["species"] = list(self.species)
        return data if self.url is not None else {k: v for k, v in data.items() if k != "url"}

    @property
    def shipped(self) -> bool:
        """Whether the file comes with the package (no ``url``)."""
        return self.url is None

    @property
    def card_path(self) -> Path:
        """Absolute path of the model card."""
        return self.root / self.card


@dataclass(frozen=True)
class NequIPNetEntry:
    """A model published on nequip.net, known to the registry by its id.

    Parameters
    ----------
    id : str
        ``nequip.net:group/name:version``.
    architecture : str
        ``"nequip"`` or ``"allegro"``.
    description : str
        One line for ``allegro-ase models list``.
    num_species : int
        How many chemical species the model has parameters for.
    r_max : float or None
        Cutoff radius (Å); None when not known before the file is read.
    size : int or None
        Approximate size of the file (bytes); None when not known.
    license : str
        The licence of the weights.
    citation : tuple of str
        What to cite when using the model, one reference a string.
    sha256 : str or None
        sha256 of the published file, checked at download and before every use; None when no
        checksum is known (the one computed at the first download is recorded and checked).
    """

    id: str
    architecture: str
    description: str
    num_species: int
    r_max: float | None
    size: int | None
    license: str
    citation: tuple[str, ...]
    sha256: str | None = None

    def __post_init__(self):
        from ..nequip_files.hub import PREFIX, parse_model_id  # lazily: hub imports this module

        if not (isinstance(self.id, str) and self.id.startswith(PREFIX)):
            raise ValueError(f"id {self.id!r} must start with {PREFIX!r}")
        parse_model_id(self.id)
        if self.architecture not in ("nequip", "allegro"):
            raise ValueError(f"architecture {self.architecture!r} must be 'nequip' or 'allegro'")
        if not (isinstance(self.num_species, int) and self.num_species > 0):
            raise ValueError(f"num_species {self.num_species!r} must be a positive integer")
        if self.r_max is not None and not (isinstance(self.r_max, int | float) and self.r_max > 0):
            raise ValueError(f"r_max {self.r_max!r} must be a positive number (Å) or null")
        if self.size is not None and not (isinstance(self.size, int) and self.size >= 0):
            raise ValueError(f"size {self.size!r} must be a number of bytes or null")
        if not (isinstance(self.license, str) and self.license):
            raise ValueError(f"license {self.license!r} must be a non-empty string")
        if not self.citation or not all(isinstance(ref, str) and ref for ref in self.citation):
            raise ValueError(f"citation {self.citation!r} must be a non-empty list of strings")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", str(self.sha256)):
            raise ValueError(f"sha256 {self.sha256!r} is neither null nor 64 lowercase hex digits")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NequIPNetEntry:
        """Build an entry from its registry JSON object, rejecting unknown or missing keys."""
        if not isinstance(data, dict):
            raise ValueError(f"an entry is a JSON object, not {type(data).__name__}")
        keys = {item.name for item in fields(cls)}
        unknown, missing = set(data) - keys, keys - set(data)
        if unknown or missing:
            raise ValueError(
                f"unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; a nequip.net "
                f"entry has the keys {sorted(keys)}"
            )
        if not isinstance(data["citation"], list):
            raise ValueError(f"citation {data['citation']!r} must be a list of strings")
        return cls(**{**data, "citation": tuple(data["citation"])})

    @property
    def version(self) -> str:
        """The version part of the id."""
        return self.id.rsplit(":", 1)[1]


def load_nequip_net_models(path: str | os.PathLike) -> dict[str, NequIPNetEntry]:
    """Read the ``nequip_net_models`` list of a registry file (empty when it has none).

    Returns
    -------
    dict of str to NequIPNetEntry
        The entries by id, in file order.
    """
    path = Path(path)
    load_registry(path)  # the same checks of the file as a whole
    data = json.loads(path.read_text(encoding="utf-8"))
    items = data.get("nequip_net_models", [])
    if not isinstance(items, list):
        raise ZooError(f"{path}: 'nequip_net_models' must be a list.")
    entries: dict[str, NequIPNetEntry] = {}
    for index, item in enumerate(items):
        try:
            entry = NequIPNetEntry.from_dict(item)
        except (AttributeError, TypeError, ValueError) as error:
            raise ZooError(f"{path}: nequip.net model #{index} is invalid: {error}.") from error
        if entry.id in entries:
            raise ZooError(f"{path}: the id {entry.id!r} is listed twice.")
        entries[entry.id] = entry
    return entries


def load_registry(path: str | os.PathLike) -> dict[str, ModelEntry]:
    """Read and check a registry file.

    Returns
    -------
    dict of str to ModelEntry
        The entries by name, in file order.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ZooError(
            f"No model registry at {path}. If ALLEGRO_ASE_REGISTRY points there, fix or unset "
            "it; otherwise reinstall allegro-ase."
        ) from None
    except json.JSONDecodeError as error:
        raise ZooError(f"The model registry {path} is not valid JSON: {error}.") from error
    header = (data.get("format"), data.get("format_version")) if isinstance(data, dict) else None
    if header != (REGISTRY_FORMAT, REGISTRY_FORMAT_VERSION) or not isinstance(
        data.get("models"), list
    ):
        raise ZooError(
            f"{path} is not a model registry: expected {{'format': {REGISTRY_FORMAT!r}, "
            f"'format_version': {REGISTRY_FORMAT_VERSION}, 'models': [...]}}."
        )
    entries: dict[str, ModelEntry] = {}
    for index, item in enumerate(data["models"]):
        try:
            entry = ModelEntry.from_dict(item, path.parent)
        except (AttributeError, TypeError, ValueError) as error:
            raise ZooError(f"{path}: model #{index} is invalid: {error}.") from error
        if entry.name in entries:
            raise ZooError(f"{path}: the name {entry.name!r} is used by two models.")
        entries[entry.name] = entry
    return entries


def write_registry(path: str | os.PathLike, entries: list[ModelEntry]) -> None:
    """Write ``entries``, sorted by name, as the registry file ``path`` (atomically).

    A ``nequip_net_models`` list already in the file is kept unchanged.
    """
    path = Path(path)
    models = [entry.to_dict() for entry in sorted(entries, key=lambda entry: entry.name)]
    document = {
        "format": REGISTRY_FORMAT,
        "format_version": REGISTRY_FORMAT_VERSION,
        "models": models,
    }
    try:  # keep the file's nequip.net list as it is
        previous = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(previous, dict) and "nequip_net_models" in previous:
            document["nequip_net_models"] = previous["nequip_net_models"]
    except (OSError, ValueError, TypeError):
        pass
    text = json.dumps(document, indent=2)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text + "\n", encoding="utf-8")
    os.replace(partial, path)


def register(
    checkpoint: str | os.PathLike,
    name: str,
    card: str | os.PathLike,
    *,
    version: str = "1",
    description: str = "",
    url: str | None = None,
    registry: str | os.PathLike,
) -> ModelEntry:
    """Add or replace the registry entry of a model file (a maintainer's tool).

    Species, r_max and dtype come from the file's verified metadata; sha256 and size from its
    bytes.

    Parameters
    ----------
    checkpoint : path-like
        A file written by :func:`allegro_ase.save_model`. For a shipped model (no ``url``) it
        must lie inside the registry's folder; a remote model is cached under its base name.
    name, version, description : str
        See :class:`ModelEntry`.
    card : path-like
        The model card, inside the registry's folder.
    url : str or None
        Download address of a remote model; None for a shipped one.
    registry : path-like
        The registry file to edit (created if absent).

    Returns
    -------
    ModelEntry
        The entry written.
    """
    registry = Path(registry)
    root, checkpoint = registry.parent.resolve(), Path(checkpoint).resolve()
    if not checkpoint.is_file():
        raise ZooError(f"No model file at {checkpoint}.")
    metadata, _ = read_metadata(checkpoint)
    entry = ModelEntry(
        name=name,
        version=version,
        description=description,
        species=tuple(metadata["type_names"]),
        r_max=float(metadata["r_max"]),
        dtype=metadata["model_dtype"],
        file=checkpoint.name if url is not None else _inside(root, checkpoint, "model file"),
        sha256=file_sha256(checkpoint),
        size=checkpoint.stat().st_size,
        card=_inside(root, Path(card).resolve(), "model card"),
        url=url,
        root=root,
    )
    entries = load_registry(registry) if registry.exists() else {}
    write_registry(registry, [*(e for e in entries.values() if e.name != name), entry])
    return entry


def _inside(root: Path, path: Path, what: str) -> str:
    """``path`` relative to ``root`` (``/``-separated); it must exist inside ``root``."""
    if not path.is_file() or not path.is_relative_to(root):
        raise ZooError(f"The {what} {path} must be an existing file inside {root}; copy it there.")
    return path.relative_to(root).as_posix()
