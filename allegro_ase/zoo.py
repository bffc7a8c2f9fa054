"""Model zoo: find a pretrained model by name and return a verified local file.

The registry (:mod:`allegro_ase.io.registry`) is ``pretrained/registry.json`` in the repository,
installed as package data of ``allegro_ase.pretrained``. A model without ``url`` is shipped: its
file lies in the registry's folder and is used without any network access. A model with ``url``
is downloaded once with :func:`pooch.retrieve` (to a temporary file, renamed only when its sha256
matches the registry) into the cache directory. Every file, shipped or cached, has its sha256
checked against the registry right before use.

Environment variables, read at each call:

``ALLEGRO_ASE_CACHE``
    Cache directory for downloaded models (default: the user cache directory of the platform,
    e.g. ``~/.cache/allegro-ase`` on Linux).
``ALLEGRO_ASE_OFFLINE``
    ``1`` (or ``true``, ``yes``): never touch the network; use shipped and cached files only.
``ALLEGRO_ASE_REGISTRY``
    A registry file to use instead of the shipped one (private zoos, tests); its relative
    paths are taken from its own folder.
"""

from __future__ import annotations

import difflib
import os
import sys
from importlib import resources
from pathlib import Path, PurePosixPath

from .io.checkpoint import file_sha256
from .io.registry import ModelEntry, ZooError, load_registry

__all__ = [
    "ModelEntry",
    "ZooError",
    "cache_dir",
    "get_entry",
    "is_offline",
    "list_models",
    "local_path",
    "registry_path",
    "resolve",
    "shipped_registry_path",
    "verify",
]

CACHE_ENV = "ALLEGRO_ASE_CACHE"
OFFLINE_ENV = "ALLEGRO_ASE_OFFLINE"
REGISTRY_ENV = "ALLEGRO_ASE_REGISTRY"


def shipped_registry_path() -> Path:
    """Return the registry file installed with the package."""
    return Path(str(resources.files("allegro_ase.pretrained"))) / "registry.json"


def registry_path() -> Path:
    """Return the registry file in use: ``$ALLEGRO_ASE_REGISTRY`` if set, else the shipped one."""
    override = os.environ.get(REGISTRY_ENV)
    return Path(override) if override else shipped_registry_path()


def list_models() -> list[ModelEntry]:
    """Return the models of the registry in use (shipped and remote), in registry order."""
    return list(load_registry(registry_path()).values())


def get_entry(name: str) -> ModelEntry:
    """Return the registry entry called ``name``; an unknown name raises with close matches."""
    entries = load_registry(registry_path())
    if name in entries:
        return entries[name]
    if not entries:
        raise ZooError(f"Unknown model {name!r}: the registry {registry_path()} lists no models.")
    lowered = {known.lower(): known for known in entries}
    close = [lowered[m] for m in difflib.get_close_matches(name.lower(), lowered, n=3, cutoff=0.6)]
    guess = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ZooError(
        f"Unknown model {name!r}.{guess} Known models: {', '.join(sorted(entries))} "
        "(details: `allegro-ase models list`)."
    )


def cache_dir() -> Path:
    """Return where downloaded models are kept: ``$ALLEGRO_ASE_CACHE`` or the user cache."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    import pooch  # lazily: pooch is only needed for the cache and downloads

    return Path(pooch.os_cache("allegro-ase"))


def is_offline() -> bool:
    """Whether ``$ALLEGRO_ASE_OFFLINE`` forbids network access."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def local_path(entry: ModelEntry) -> Path:
    """Return where the model file is (shipped) or would be once downloaded (remote)."""
    if entry.shipped:
        return entry.root / entry.file
    return cache_dir() / f"{entry.name}-{entry.version}" / PurePosixPath(entry.file).name


def verify(entry: ModelEntry) -> Path:
    """Check that the model's local file exists and has the registry's sha256.

    Returns
    -------
    Path
        The verified file.
    """
    path = local_path(entry)
    if entry.shipped:
        remedy = (
            "The installed package is damaged or was edited: reinstall allegro-ase "
            "(pip install --force-reinstall allegro-ase); in a source checkout, restore the file "
            "or re-register it (allegro-ase models register)."
        )
    else:
        remedy = (
            f"Delete it (rm {path}) and download it again (allegro-ase models fetch "
            f"{entry.name}, with {OFFLINE_ENV} unset)."
        )
    if not path.is_file():
        raise ZooError(f"The file of model {entry.name!r} is missing: {path}. {remedy}")
    found = file_sha256(path)
    if found != entry.sha256:
        raise ZooError(
            f"{path} (model {entry.name!r}) has sha256 {found} ({path.stat().st_size} bytes); "
            f"the registry expects {entry.sha256} ({entry.size} bytes). {remedy}"
        )
    return path


def resolve(name: str) -> Path:
    """Return a verified local file of the model ``name``, downloading it first if needed.

    Shipped models never touch the network. A remote model is taken from the cache when a copy
    with the right sha256 is there; otherwise it is downloaded (refused offline).

    Parameters
    ----------
    name : str
        A name of :func:`list_models`.

    Returns
    -------
    Path
        The model file, verified against the registry's sha256.
    """
    entry = get_entry(name)
    if not entry.shipped:
        _fetch(entry)
    return verify(entry)


def _fetch(entry: ModelEntry) -> None:
    """Make sure a remote model's file is in the cache (pooch keeps a copy whose hash matches)."""
    path = local_path(entry)
    if is_offline():
        if not path.is_file():
            raise ZooError(
                f"Model {entry.name!r} is not in the cache and {OFFLINE_ENV} forbids downloading "
                f"it. Expected file: {path} (cache directory {cache_dir()}; {CACHE_ENV} sets it). "
                f"Unset {OFFLINE_ENV} to download it, or copy the file there (sha256 "
                f"{entry.sha256})."
            )
        return
    import pooch  # lazily: it is only needed for downloads

    try:
        pooch.retrieve(
            entry.url,
            known_hash=f"sha256:{entry.sha256}",
            fname=path.name,
            path=path.parent,
            progressbar=sys.stderr.isatty(),
        )
    except ValueError as error:  # pooch deletes a download whose hash differs
        raise ZooError(
            f"Refused the file of model {entry.name!r} downloaded from {entry.url}: {error} "
            "The server's file is not the one the registry lists; upgrade allegro-ase for a "
            "current registry, or report it."
        ) from error
    except OSError as error:  # requests' errors are OSErrors too
        raise ZooError(
            f"Could not download model {entry.name!r} from {entry.url} ({type(error).__name__}: "
            f"{error}), and no verified copy is cached at {path}. Check the network and try "
            f"again, or download the file by hand to that path (sha256 {entry.sha256})."
        ) from error
