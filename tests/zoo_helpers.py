"""A local model zoo for the zoo and CLI tests: a registry in a temporary folder, one shipped
model, and remote models served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import make_model

from allegro_ase import save_model
from allegro_ase.zoo import CACHE_ENV, OFFLINE_ENV, REGISTRY_ENV

CARD_TEXT = "# tiny\n\nRandom weights, for tests only.\n"
OTHER_SHA256 = hashlib.sha256(b"not the model").hexdigest()


@functools.cache
def tiny_model_bytes() -> bytes:
    """The conftest's default model, as written by ``save_model`` (built once per session)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        save_model(make_model(), path)
        return path.read_bytes()


class _Handler(BaseHTTPRequestHandler):
    """GET a file of the server's ``files``; truncated ones stop halfway and hang up."""

    def do_GET(self):
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.server.truncated:
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        else:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


class ModelServer(ThreadingHTTPServer):
    """HTTP server on 127.0.0.1 (port chosen by the OS) in a thread; records request paths."""

    def __init__(self, files: dict[str, bytes], truncated: tuple[str, ...] = ()):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files, self.truncated, self.requests = files, set(truncated), []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"

    def stop(self) -> None:
        """Shut down and free the port: later connections are refused."""
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join()
            self.server_close()


@dataclass
class LocalZoo:
    root: Path  # the registry's folder
    cache: Path
    server: ModelServer
    model_bytes: bytes
    sha256: str

    def cached_files(self) -> list[Path]:
        return [path for path in self.cache.rglob("*") if path.is_file()]


def entry_dict(name: str, sha256: str, size: int, url: str | None = None) -> dict:
    """A registry entry for the tiny model of the conftest (Cu, Au, H; r_max 4 Å; float64)."""
    entry = {
        "name": name,
        "version": "1",
        "description": "tiny random model",
        "species": ["Cu", "Au", "H"],
        "r_max": 4.0,
        "dtype": "float64",
        "file": "tiny/model.pt",
        "sha256": sha256,
        "size": size,
        "card": "tiny/card.md",
    }
    return entry if url is None else {**entry, "url": url}


def write_registry_json(root: Path, models: list[dict]) -> Path:
    path = root / "registry.json"
    registry = {"format": "allegro-ase-registry", "format_version": 1, "models": models}
    path.write_text(json.dumps(registry, indent=2))
    return path


def make_local_zoo(tmp_path: Path, monkeypatch) -> LocalZoo:
    """Registry with ``tiny-shipped`` and remote ``tiny-remote``, ``tiny-bad-hash``
    (registry sha256 of another file) and ``tiny-truncated`` (download cut halfway).

    The environment points the zoo at this registry and an empty cache; the caller stops
    ``server``.
    """
    root, cache, model_bytes = tmp_path / "pretrained", tmp_path / "cache", tiny_model_bytes()
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "model.pt").write_bytes(model_bytes)
    (root / "tiny" / "card.md").write_text(CARD_TEXT)
    sha256, size = hashlib.sha256(model_bytes).hexdigest(), len(model_bytes)
    server = ModelServer({"/tiny.pt": model_bytes, "/cut.pt": model_bytes}, truncated=("/cut.pt",))
    models = [
        entry_dict("tiny-shipped", sha256, size),
        entry_dict("tiny-remote", sha256, size, server.url("/tiny.pt")),
        entry_dict("tiny-bad-hash", OTHER_SHA256, size, server.url("/tiny.pt")),
        entry_dict("tiny-truncated", sha256, size, server.url("/cut.pt")),
    ]
    monkeypatch.setenv(REGISTRY_ENV, str(write_registry_json(root, models)))
    monkeypatch.setenv(CACHE_ENV, str(cache))
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a user's proxy must not see the test server
    return LocalZoo(root, cache, server, model_bytes, sha256)
