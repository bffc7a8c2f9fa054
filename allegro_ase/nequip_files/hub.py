"""nequip.net model ids: resolve ``nequip.net:group/name:version`` to a verified local file.

The reference framework names its published models (the foundation potentials) by id, e.g.
``nequip.net:mir-group/NequIP-OAM-L:0.1``. This module is the client for that service and the
cache of what it downloads; loading the ``.nequip.zip`` is the job of the rest of the package.

1. The id is checked (``group/name:version``; group and name: letters, digits, ``-``; version:
   the same and ``.``).
2. ``GET <base>//api/models/download/<id, URL-encoded>`` (the path the reference client uses,
   double slash included) answers JSON: ``modelId``, ``newerVersionId``, ``webUrl`` and
   ``artifact{downloadUrl, viewUrl, hostName, doi}``; 404 means no such model.
3. The artefact (a ``.nequip.zip`` of up to about 260 MB, hosted on Zenodo) is downloaded with
   a progress bar to ``<file>.partial`` and renamed when complete. An interrupted download keeps its
   partial file; the next call asks for the rest (HTTP ``Range``, with ``If-Range``) or starts
   again when the server cannot resume.
4. nequip.net publishes no checksum. The sha256 is therefore recorded at the first download in a
   sidecar JSON (id, URL, sha256, size, date) and checked on every later use: this catches a
   file that changed or was damaged in the cache, not a file that was wrong from the start. When
   allegro-ase's registry pins a sha256 for the id (``nequip_net_models`` in
   ``pretrained/registry.json``), that value is checked instead, and a download that does not
   match it is deleted.

A cached, verified file is used without contacting the server, so the notice about a newer
version only comes with a download.

Files, under :func:`allegro_ase.zoo.cache_dir` (``$ALLEGRO_ASE_CACHE``)::

    nequip.net/<group>/<name>/<name>-<version>.nequip.zip        the model
    nequip.net/<group>/<name>/<name>-<version>.nequip.zip.json   its record (sha256, ...)
    ... .partial, .partial.json                                  during a download

Environment variables, read at each call: ``ALLEGRO_ASE_CACHE``, ``ALLEGRO_ASE_OFFLINE`` (see
:mod:`allegro_ase.zoo`: offline, a cached file is used and nothing is downloaded) and
``ALLEGRO_ASE_NEQUIP_NET_URL`` (the service, default ``https://www.nequip.net``).

Downloads use the standard library (:mod:`urllib.request`), not pooch: pooch restarts a cut
download from zero, and these files are large.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import http.client
import json
import logging
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..io.checkpoint import file_sha256
from ..io.registry import NequIPNetEntry, ZooError, load_nequip_net_models
from ..zoo import CACHE_ENV, OFFLINE_ENV, cache_dir, is_offline, registry_path

try:  # a lock between processes that download the same model (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "DEFAULT_URL",
    "PREFIX",
    "URL_ENV",
    "ChecksumError",
    "DownloadInfo",
    "ModelId",
    "ModelIdError",
    "ModelNotFoundError",
    "NequIPNetError",
    "api_url",
    "cached_path",
    "fetch",
    "get_download_info",
    "is_nequip_net_id",
    "known_models",
    "parse_model_id",
    "resolve_path",
    "verify_cached",
]

PREFIX = "nequip.net:"
URL_ENV = "ALLEGRO_ASE_NEQUIP_NET_URL"
DEFAULT_URL = "https://www.nequip.net"
TIMEOUT = 60.0  # seconds a connection may stay silent before a request fails
_CHUNK = 1 << 20
_ID = re.compile(r"([A-Za-z0-9-]+)/([A-Za-z0-9-]+):([A-Za-z0-9.-]+)")
_EXPECTED = "nequip.net:<group>/<name>:<version>, e.g. nequip.net:mir-group/NequIP-OAM-L:0.1"

logger = logging.getLogger(__name__)


class NequIPNetError(ZooError):
    """A nequip.net model that cannot be found, downloaded or trusted."""


class ModelIdError(NequIPNetError, ValueError):
    """A malformed nequip.net model id."""


class ModelNotFoundError(NequIPNetError):
    """nequip.net has no model of this id (HTTP 404)."""


class ChecksumError(NequIPNetError):
    """A model file whose sha256 is not the recorded or pinned one."""


class ModelId(NamedTuple):
    """A parsed nequip.net id; ``str()`` gives ``nequip.net:group/name:version``."""

    group: str
    name: str
    version: str

    @property
    def key(self) -> str:
        """``group/name:version``, the id as the API takes it."""
        return f"{self.group}/{self.name}:{self.version}"

    @property
    def file_name(self) -> str:
        """``name-version.nequip.zip``, the name the published files carry."""
        return f"{self.name}-{self.version}.nequip.zip"

    def __str__(self) -> str:
        return PREFIX + self.key


@dataclass(frozen=True)
class DownloadInfo:
    """The API's answer for one id (``artifact`` fields flattened)."""

    model_id: str
    newer_version_id: str | None
    web_url: str
    download_url: str
    view_url: str
    host_name: str
    doi: str


def is_nequip_net_id(text: Any) -> bool:
    """Whether ``text`` is a string that starts with ``nequip.net:`` (well-formed or not).

    A malformed id is still an id: :func:`parse_model_id` says what is wrong with it, rather
    than the caller looking for a file of that name.
    """
    return isinstance(text, str) and text.strip().startswith(PREFIX)


def parse_model_id(text: str | ModelId) -> ModelId:
    """Split ``nequip.net:group/name:version`` (the prefix may be left out) into its parts.

    Raises
    ------
    ModelIdError
        When ``text`` is not of that form; the message gives the expected one.
    """
    if isinstance(text, ModelId):
        return text
    if not isinstance(text, str):
        raise ModelIdError(f"A nequip.net model id is a string ({_EXPECTED}), not {text!r}.")
    stripped = text.strip()
    key = stripped[len(PREFIX) :] if stripped.startswith(PREFIX) else stripped
    match = _ID.fullmatch(key)
    if match is None:
        raise ModelIdError(
            f"Malformed nequip.net model id {text!r}: expected {_EXPECTED} (group and name: "
            "letters, digits and '-'; version: letters, digits, '-' and '.')."
        )
    return ModelId(*match.groups())


def base_url() -> str:
    """Return the service: ``$ALLEGRO_ASE_NEQUIP_NET_URL`` or ``https://www.nequip.net``."""
    return os.environ.get(URL_ENV, "").strip() or DEFAULT_URL


def api_url(model_id: str | ModelId) -> str:
    """Return the URL that gives the id's download information (as the reference client asks)."""
    key = parse_model_id(model_id).key
    return f"{base_url().rstrip('/')}//api/models/download/{urllib.parse.quote(key, safe='')}"


def web_page(model_id: str | ModelId) -> str:
    """Return the model's page on the service, where it can be downloaded by hand."""
    return f"{base_url().rstrip('/')}/models/{parse_model_id(model_id).key}"


def cached_path(model_id: str | ModelId) -> Path:
    """Where the model's file is, or will be once downloaded."""
    mid = parse_model_id(model_id)
    return cache_dir() / "nequip.net" / mid.group / mid.name / mid.file_name


def known_models() -> list[NequIPNetEntry]:
    """Return the nequip.net models of the registry in use (``nequip_net_models``), in order."""
    return list(load_nequip_net_models(registry_path()).values())


def resolve_path(path_or_id: Any) -> Any:
    """Return the verified local file of a nequip.net id (see :func:`fetch`); anything else as is."""
    return fetch(path_or_id) if is_nequip_net_id(path_or_id) else path_or_id


def fetch(
    model_id: str | ModelId,
    *,
    force: bool = False,
    progress: bool | None = None,
    timeout: float = TIMEOUT,
) -> Path:
    """Return a verified local ``.nequip.zip`` of a nequip.net model, downloading it if needed.

    Parameters
    ----------
    model_id : str or ModelId
        ``nequip.net:group/name:version``.
    force : bool
        Download again even if a copy is cached (it replaces the copy once the new file is
        complete): the remedy for a cached file that fails its check.
    progress : bool or None
        Show a progress bar on stderr; None: only when stderr is a terminal.
    timeout : float
        Seconds a connection may stay silent before the request fails.

    Returns
    -------
    Path
        The cached file, its sha256 checked against the registry's pin or the sidecar record.

    Raises
    ------
    ModelIdError, ModelNotFoundError, ChecksumError, NequIPNetError
        Malformed id; no such model; a file that is not the recorded or pinned one; offline
        without a cached copy, or a network failure (the message names the id and the URL).
    """
    mid = parse_model_id(model_id)
    path, pinned = cached_path(mid), _pinned_sha256(mid)
    if path.is_file() and not force:
        return _verified(mid, path, pinned)
    if is_offline():
        raise NequIPNetError(_offline_message(mid, path, force))
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        if path.is_file() and not force:  # another process finished while this one waited
            return _verified(mid, path, pinned)
        info = get_download_info(mid, timeout=timeout)
        cite = _announce(mid, info)
        show = sys.stderr.isatty() if progress is None else progress
        if show:
            print(f"{mid}: downloading {info.download_url} to {path}\n{cite}", file=sys.stderr)
        partial = path.with_name(path.name + ".partial")
        sha256, size = _download(mid, info.download_url, partial, timeout, show)
        if pinned is not None and sha256 != pinned:
            _discard(partial)
            raise ChecksumError(
                f"Refused the download of {mid} from {info.download_url}: its sha256 is {sha256} "
                f"({size} bytes), but allegro-ase's registry pins {pinned}. Nothing was kept. "
                "The published file is not the one the registry knows: upgrade allegro-ase for "
                "a current registry, or report it."
            )
        record = {
            "model_id": str(mid),
            "download_url": info.download_url,
            "api_url": api_url(mid),
            "doi": info.doi,
            "web_url": info.web_url,
            "sha256": sha256,
            "size": size,
            "downloaded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
            "source": "download",
        }
        _write_json(_sidecar(path), record)
        os.replace(partial, path)
        _partial_info(partial).unlink(missing_ok=True)
        logger.info("%s: cached at %s (sha256 %s, %d bytes)", mid, path, sha256, size)
        return path


def verify_cached(model_id: str | ModelId) -> Path:
    """Check the cached file of ``model_id`` (which must exist) without any network access.

    Raises
    ------
    NequIPNetError
        No cached copy.
    ChecksumError
        The copy is not the recorded (or pinned) file.
    """
    mid = parse_model_id(model_id)
    path = cached_path(mid)
    if not path.is_file():
        raise NequIPNetError(
            f"{mid} is not cached (expected at {path}); `allegro-ase models fetch {mid}` "
            "downloads it."
        )
    return _verified(mid, path, _pinned_sha256(mid))


def get_download_info(model_id: str | ModelId, *, timeout: float = TIMEOUT) -> DownloadInfo:
    """Ask the service where the model's file is (one GET of :func:`api_url`)."""
    mid = parse_model_id(model_id)
    url = api_url(mid)
    request = urllib.request.Request(url, headers={**_headers(), "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise ModelNotFoundError(
                f"nequip.net has no model {mid} (HTTP 404 from {url}). Check the id's spelling "
                f"and version on {base_url()} (the known ones: `allegro-ase models list`)."
            ) from None
        raise NequIPNetError(
            f"nequip.net could not give the download of {mid}: HTTP {error.code} {error.reason} "
            f"from {url}. The service may be down; try again later. {_by_hand(mid)}"
        ) from None
    except (OSError, http.client.HTTPException) as error:  # URLError, timeouts, resets
        reason = getattr(error, "reason", error)
        raise NequIPNetError(
            f"Could not reach nequip.net for {mid} ({type(error).__name__}: {reason}; URL "
            f"{url}). Check the network (and any proxy); {URL_ENV} sets another service. "
            f"{_by_hand(mid)}"
        ) from error
    try:
        data = json.loads(body)
        artifact = data.get("artifact") or {}
        download_url = artifact.get("downloadUrl")
        if not (isinstance(download_url, str) and download_url.startswith(("https://", "http://"))):
            raise ValueError(f"artifact.downloadUrl is {download_url!r}")
        newer = data.get("newerVersionId")
        return DownloadInfo(
            model_id=str(data.get("modelId") or mid.key),
            newer_version_id=str(newer) if newer else None,
            web_url=str(data.get("webUrl") or web_page(mid)),
            download_url=download_url,
            view_url=str(artifact.get("viewUrl") or ""),
            host_name=str(artifact.get("hostName") or ""),
            doi=str(artifact.get("doi") or ""),
        )
    except (ValueError, AttributeError, TypeError) as error:
        raise NequIPNetError(
            f"nequip.net's answer for {mid} ({url}) is not the expected JSON with "
            f"artifact.downloadUrl: {error}. {_by_hand(mid)}"
        ) from error


# -- internals ----------------------------------------------------------------------------


def _pinned_sha256(mid: ModelId) -> str | None:
    entry = load_nequip_net_models(registry_path()).get(str(mid))
    return entry.sha256 if entry is not None else None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _partial_info(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def _remedy(mid: ModelId, path: Path) -> str:
    return (
        f"Delete it (rm {path}) or download it again: `allegro-ase models fetch --force {mid}` "
        f"(Python: allegro_ase.nequip_files.hub.fetch({str(mid)!r}, force=True)), with "
        f"{OFFLINE_ENV} unset."
    )


def _verified(mid: ModelId, path: Path, pinned: str | None) -> Path:
    """Check ``path`` against the pin, else its sidecar record (written now if absent)."""
    sidecar = _sidecar(path)
    record = None
    if sidecar.exists():
        try:
            record = json.loads(sidecar.read_text(encoding="utf-8"))
            if not re.fullmatch(r"[0-9a-f]{64}", str(record.get("sha256"))):
                raise ValueError("no sha256 in it")
        except (OSError, ValueError, AttributeError) as error:
            raise ChecksumError(
                f"The record {sidecar} of the cached {mid} is unreadable ({error}), so {path} "
                f"cannot be checked. {_remedy(mid, path)}"
            ) from error
    found = file_sha256(path)
    if pinned is not None:
        expected, origin = pinned, "allegro-ase's registry pins"
    elif record is not None:
        expected = record["sha256"]
        origin = (
            f"{sidecar} recorded at its download on {record.get('downloaded_at', '?')} "
            f"({record.get('size', '?')} bytes)"
        )
    else:
        _write_json(
            sidecar,
            {
                "model_id": str(mid),
                "download_url": None,
                "sha256": found,
                "size": path.stat().st_size,
                "downloaded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"
                ),
                "source": "found in the cache (placed there by hand)",
            },
        )
        logger.info("%s: %s was placed in the cache by hand; recorded sha256 %s", mid, path, found)
        return path
    if found != expected:
        raise ChecksumError(
            f"The cached file of {mid}, {path}, has sha256 {found} ({path.stat().st_size} "
            f"bytes), but {origin} {expected}: the file changed or was damaged since. "
            f"{_remedy(mid, path)}"
        )
    if pinned is not None and record is not None and record["sha256"] != pinned:
        record["sha256"] = pinned  # a pin added after the download: keep the record in step
        _write_json(sidecar, record)
    return path


def _download(mid: ModelId, url: str, partial: Path, timeout: float, show: bool) -> tuple[str, int]:
    """Download ``url`` into ``partial`` (resuming it when possible); return sha256 and size."""
    from tqdm.auto import tqdm

    info_path = _partial_info(partial)
    resume = _read_resume_info(info_path, url) if partial.is_file() else None
    offset = partial.stat().st_size if resume is not None else 0
    if resume is None:
        _discard(partial)
    headers = _headers()
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = resume.get("etag") or resume.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the partial file cannot be continued: start again
            _discard(partial)
            return _download(mid, url, partial, timeout, show)
        raise NequIPNetError(
            f"Could not download {mid}: HTTP {error.code} {error.reason} from {url}. "
            f"{_by_hand(mid)}"
        ) from None
    except (OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise NequIPNetError(
            f"Could not download {mid} from {url} ({type(error).__name__}: {reason}). Check "
            f"the network and call again. {_by_hand(mid)}"
        ) from error
    with response:
        if offset and response.status == 206 and _range_start(response) != offset:
            response.close()  # not the part asked for: start again from zero
            _discard(partial)
            return _download(mid, url, partial, timeout, show)
        if response.status != 206:
            offset = 0  # the server sent the whole file (changed, or no resume support)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        _write_json(
            info_path,
            {
                "url": url,
                "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
            },
        )
        digest = hashlib.sha256()
        if offset:
            with open(partial, "rb") as handle:
                for block in iter(lambda: handle.read(_CHUNK), b""):
                    digest.update(block)
            logger.info("%s: resuming the download at byte %d", mid, offset)
        written = offset
        bar = tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=mid.file_name,
            disable=not show,
            file=sys.stderr,
        )
        try:
            with bar, open(partial, "ab" if offset else "wb") as handle:
                while block := response.read(_CHUNK):
                    handle.write(block)
                    digest.update(block)
                    written += len(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as error:
            raise _interrupted(mid, url, partial, written, total, error) from error
    if total is not None and written != total:
        raise _interrupted(mid, url, partial, written, total, None)
    return digest.hexdigest(), written


def _interrupted(
    mid: ModelId, url: str, partial: Path, written: int, total: int | None, error: Exception | None
) -> NequIPNetError:
    cause = f" ({type(error).__name__}: {error})" if error is not None else ""
    return NequIPNetError(
        f"The download of {mid} from {url} stopped after {written} of "
        f"{total if total is not None else '?'} bytes{cause}. The part received is kept at "
        f"{partial}; call again (e.g. `allegro-ase models fetch {mid}`) to resume it."
    )


def _range_start(response: Any) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _read_resume_info(info_path: Path, url: str) -> dict | None:
    """Return the partial file's origin if it came from ``url``; None: it cannot be resumed."""
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("url") == url else None


def _discard(partial: Path) -> None:
    partial.unlink(missing_ok=True)
    _partial_info(partial).unlink(missing_ok=True)


def _announce(mid: ModelId, info: DownloadInfo) -> str:
    """Log the source, a newer version if there is one, and what to cite (returned too)."""
    logger.info(
        "%s: %s (host %s, DOI %s)", mid, info.download_url, info.host_name or "?", info.doi or "?"
    )
    if info.newer_version_id:
        newer = info.newer_version_id
        newer = newer if newer.startswith(PREFIX) else PREFIX + newer
        message = (
            f"A newer version of {mid} is published: {newer}. You get the version you asked "
            f"for; load {newer} to use the newer one ({info.web_url})."
        )
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    known = str(mid) in load_nequip_net_models(registry_path())
    cite = (
        f"Please cite {mid} when you use it: the references are on {info.web_url}"
        + (f" and in `allegro-ase models info {mid}`" if known else "")
        + (f"; the file's DOI is {info.doi}." if info.doi else ".")
    )
    logger.info(cite)
    return cite


def _offline_message(mid: ModelId, path: Path, force: bool) -> str:
    what = "cannot be downloaded again" if force else "is not in the cache"
    return (
        f"{mid} {what}: {OFFLINE_ENV} forbids network access. On a machine with internet "
        f"access, run `allegro-ase models fetch {mid}` (it prints where the file went) or "
        f"download {mid.file_name} from {web_page(mid)}; copy it here and either load it by "
        f"path, AllegroCalculator.from_nequip({mid.file_name!r}), or put it at {path} "
        f"(cache directory {cache_dir()}, set by {CACHE_ENV})."
    )


def _by_hand(mid: ModelId) -> str:
    return (
        f"Or download {mid.file_name} by hand from {web_page(mid)} and load it by path "
        f"(AllegroCalculator.from_nequip({mid.file_name!r})) or put it at {cached_path(mid)}."
    )


def _headers() -> dict[str, str]:
    from .. import __version__

    return {"User-Agent": f"allegro-ase/{__version__} (nequip.net client; Python urllib)"}


def _write_json(path: Path, data: dict) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (POSIX; released when the process ends, too)."""
    if fcntl is None:  # pragma: no cover - Windows: no lock
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock
