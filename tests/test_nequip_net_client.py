"""The nequip.net client, for real, against a local HTTP server that answers like the service:
``//api/models/download/<id>`` gives the JSON, the artefact URL gives the file (with ``Range``
requests, ``ETag`` and ``If-Range``, so that a cut download can be resumed)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from allegro_ase import AllegroCalculator, zoo
from allegro_ase.cli import main
from allegro_ase.io.registry import ZooError, load_nequip_net_models, load_registry, register
from allegro_ase.nequip_files import hub

MODEL_ID = "nequip.net:test-group/Tiny-Model:0.1"
NEWER_ID = "nequip.net:test-group/Old-Model:0.1"
PACKAGE = Path(__file__).parent / "data" / "nequip_files" / "nequip.nequip.zip"
BODY = bytes(range(256)) * 1200  # 307 kB: several read blocks, no meaning


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        raw_path = self.requestline.split()[1]  # http.server folds a leading '//' of self.path
        server.requests.append((raw_path, self.headers.get("Range")))
        api = "//api/models/download/"  # the reference client's double slash
        if raw_path.startswith(api):
            key = urllib.parse.unquote(raw_path[len(api) :])
            if server.api_status != 200:
                self.send_error(server.api_status)
                return
            if key not in server.models:
                self.send_error(404)
                return
            file_path, newer = server.models[key]
            body = json.dumps(
                {
                    "modelId": key,
                    "newerVersionId": newer,
                    "webUrl": server.url(f"/models/{key}"),
                    "artifact": {
                        "downloadUrl": server.url(file_path),
                        "viewUrl": server.url("/record"),
                        "hostName": "test",
                        "doi": "10.0000/test.1",
                    },
                }
            ).encode()
            self._send(200, body, {"Content-Type": "application/json"})
            return
        if self.path in server.slow:
            time.sleep(server.slow[self.path])
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        start, wanted = 0, self.headers.get("Range")
        if wanted and self.headers.get("If-Range", etag) == etag:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
        headers = {"ETag": etag, "Accept-Ranges": "bytes"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        cut = server.cut.pop(self.path, None)  # hang up after this many bytes, once
        self._send(206 if start else 200, body[start:], headers, cut)

    def _send(self, status, body, headers, cut=None):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


class NequIPNetServer(ThreadingHTTPServer):
    """The service on 127.0.0.1 (port from the OS) in a thread; records (path, Range)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.models: dict[str, tuple[str, str | None]] = {}  # key -> (file path, newer id)
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.slow: dict[str, float] = {}
        self.api_status = 200
        self.requests: list[tuple[str, str | None]] = []
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"

    def publish(self, model_id: str, body: bytes, newer: str | None = None) -> None:
        key = model_id.removeprefix("nequip.net:")
        file_path = f"/files/{key.replace('/', '_').replace(':', '-')}.nequip.zip"
        self.models[key], self.files[file_path] = (file_path, newer), body

    def file_requests(self) -> list[tuple[str, str | None]]:
        return [request for request in self.requests if request[0].startswith("/files/")]

    def stop(self) -> None:
        """Shut down and free the port: later connections are refused."""
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join()
            self.server_close()


def write_registry(folder: Path, nequip_net_models: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.json"
    document = {"format": "allegro-ase-registry", "format_version": 1, "models": []}
    path.write_text(json.dumps({**document, "nequip_net_models": nequip_net_models}))
    return path


def pinned_entry(model_id: str, sha256: str | None) -> dict:
    return {
        "id": model_id,
        "architecture": "nequip",
        "description": "test model",
        "num_species": 2,
        "r_max": 4.5,
        "size": 1000,
        "license": "CC-BY-4.0",
        "citation": ["A. Tester, Test. J. 1, 1 (2026)"],
        "sha256": sha256,
    }


@pytest.fixture
def server(tmp_path, monkeypatch):
    service = NequIPNetServer()
    service.publish(MODEL_ID, BODY)
    monkeypatch.setenv(hub.URL_ENV, service.url(""))
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(write_registry(tmp_path / "registry", [])))
    monkeypatch.delenv(zoo.OFFLINE_ENV, raising=False)
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield service
    service.stop()


def cache_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- ids ----------------------------------------------------------------------------------


def test_ids_are_parsed_with_and_without_the_prefix():
    parsed = hub.parse_model_id("nequip.net:mir-group/NequIP-OAM-L:0.1")
    assert parsed == ("mir-group", "NequIP-OAM-L", "0.1")
    assert parsed == hub.parse_model_id("mir-group/NequIP-OAM-L:0.1")
    assert str(parsed) == "nequip.net:mir-group/NequIP-OAM-L:0.1"
    assert parsed.file_name == "NequIP-OAM-L-0.1.nequip.zip"
    assert hub.is_nequip_net_id("nequip.net:anything")
    assert not hub.is_nequip_net_id("model.nequip.zip")
    assert not hub.is_nequip_net_id(PACKAGE)


@pytest.mark.parametrize(
    "text",
    [
        "nequip.net:mir-group/NequIP-OAM-L",  # no version
        "nequip.net:NequIP-OAM-L:0.1",  # no group
        "nequip.net:mir group/NequIP-OAM-L:0.1",  # space
        "nequip.net:mir-group/NequIP_OAM_L:0.1",  # '_' is not allowed in a name
        "nequip.net:mir-group/NequIP-OAM-L:0.1/../x",  # '/' in the version
        "nequip.net:",
    ],
)
def test_malformed_id_says_the_expected_form_and_asks_nothing(server, text):
    with pytest.raises(hub.ModelIdError, match="expected nequip.net:<group>/<name>:<version>"):
        hub.fetch(text)
    with pytest.raises(ValueError, match="Malformed nequip.net model id"):
        AllegroCalculator.from_nequip(text)
    assert server.requests == []


def test_api_url_is_the_reference_clients():
    assert hub.api_url("nequip.net:mir-group/NequIP-OAM-L:0.1") == (
        "https://www.nequip.net//api/models/download/mir-group%2FNequIP-OAM-L%3A0.1"
    )


# -- download, record, reuse --------------------------------------------------------------


def test_download_shows_progress_records_sha256_and_is_reused_without_network(
    server, tmp_path, capsys
):
    path = hub.fetch(MODEL_ID, progress=True)
    assert path == tmp_path / "cache/nequip.net/test-group/Tiny-Model/Tiny-Model-0.1.nequip.zip"
    assert path.read_bytes() == BODY
    err = capsys.readouterr().err
    assert "Tiny-Model-0.1.nequip.zip" in err and "100%" in err  # tqdm's bar, on stderr
    assert f"Please cite {MODEL_ID}" in err and "10.0000/test.1" in err
    record = json.loads(path.with_name(path.name + ".json").read_text())
    assert record["model_id"] == MODEL_ID
    assert record["sha256"] == sha256(BODY) and record["size"] == len(BODY)
    assert record["download_url"] == server.url("/files/test-group_Tiny-Model-0.1.nequip.zip")
    assert record["downloaded_at"][:4].isdigit()
    assert server.requests[0] == ("//api/models/download/test-group%2FTiny-Model%3A0.1", None)
    assert len(server.requests) == 2
    assert cache_files(tmp_path) == [path.name, path.name + ".json"]  # no .partial left

    server.stop()  # the cached, verified copy needs no network
    assert hub.fetch(MODEL_ID) == path
    assert hub.verify_cached(MODEL_ID) == path


def test_changed_cached_file_is_a_clear_error_and_force_downloads_it_again(server):
    path = hub.fetch(MODEL_ID)
    path.write_bytes(BODY[:-1] + b"!")
    with pytest.raises(hub.ChecksumError) as error:
        hub.fetch(MODEL_ID)
    message = str(error.value)
    for part in (MODEL_ID, str(path), sha256(BODY), "changed or was damaged", f"rm {path}"):
        assert part in message
    assert f"allegro-ase models fetch --force {MODEL_ID}" in message
    assert f"hub.fetch({MODEL_ID!r}, force=True)" in message
    assert hub.fetch(MODEL_ID, force=True).read_bytes() == BODY
    assert hub.fetch(MODEL_ID) == path


def test_pinned_sha256_is_checked_and_a_mismatching_download_is_not_kept(
    server, tmp_path, monkeypatch
):
    other = sha256(b"another file")
    registry = write_registry(tmp_path / "pinned", [pinned_entry(MODEL_ID, other)])
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(registry))
    with pytest.raises(hub.ChecksumError) as error:
        hub.fetch(MODEL_ID)
    assert f"pins {other}" in str(error.value) and "Nothing was kept" in str(error.value)
    assert sha256(BODY) in str(error.value)
    assert cache_files(tmp_path) == []

    registry = write_registry(tmp_path / "pinned", [pinned_entry(MODEL_ID, sha256(BODY))])
    assert hub.fetch(MODEL_ID).read_bytes() == BODY


def test_pin_is_checked_before_every_use(server, tmp_path, monkeypatch):
    path = hub.fetch(MODEL_ID)
    registry = write_registry(tmp_path / "pinned", [pinned_entry(MODEL_ID, sha256(b"x"))])
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(registry))
    with pytest.raises(hub.ChecksumError, match="allegro-ase's registry pins"):
        hub.fetch(MODEL_ID)
    assert path.is_file()  # an error, not a silent deletion


def test_interrupted_download_leaves_no_file_and_the_next_call_resumes(server, tmp_path):
    file_path = "/files/test-group_Tiny-Model-0.1.nequip.zip"
    server.cut[file_path] = 100_000
    path = hub.cached_path(MODEL_ID)
    with pytest.raises(hub.NequIPNetError) as error:
        hub.fetch(MODEL_ID)
    assert f"stopped after 100000 of {len(BODY)} bytes" in str(error.value)
    assert MODEL_ID in str(error.value) and "to resume it" in str(error.value)
    assert not path.exists()
    partial = path.with_name(path.name + ".partial")
    assert partial.read_bytes() == BODY[:100_000]

    assert hub.fetch(MODEL_ID).read_bytes() == BODY
    assert server.file_requests() == [(file_path, None), (file_path, "bytes=100000-")]
    record = json.loads(path.with_name(path.name + ".json").read_text())
    assert record["sha256"] == sha256(BODY)
    assert cache_files(tmp_path) == [path.name, path.name + ".json"]


def test_interrupted_download_restarts_when_the_servers_file_changed(server):
    file_path = "/files/test-group_Tiny-Model-0.1.nequip.zip"
    server.cut[file_path] = 50_000
    with pytest.raises(hub.NequIPNetError, match="stopped after 50000"):
        hub.fetch(MODEL_ID)
    new_body = BODY[::-1]
    server.files[file_path] = new_body  # new ETag: If-Range makes the server send it whole
    path = hub.fetch(MODEL_ID)
    assert path.read_bytes() == new_body
    assert json.loads(path.with_name(path.name + ".json").read_text())["sha256"] == sha256(new_body)


# -- service errors -----------------------------------------------------------------------


def test_unknown_model_is_a_clear_404_error(server):
    with pytest.raises(hub.ModelNotFoundError) as error:
        hub.fetch("nequip.net:test-group/No-Such-Model:9.9")
    message = str(error.value)
    assert "nequip.net:test-group/No-Such-Model:9.9" in message and "HTTP 404" in message
    assert server.url("//api/models/download/test-group%2FNo-Such-Model%3A9.9") in message


def test_server_error_names_the_id_and_url(server):
    server.api_status = 503
    with pytest.raises(hub.NequIPNetError) as error:
        hub.fetch(MODEL_ID)
    assert "HTTP 503" in str(error.value) and MODEL_ID in str(error.value)
    assert hub.api_url(MODEL_ID) in str(error.value)


def test_server_down_names_the_id_and_url(server, tmp_path):
    server.stop()
    with pytest.raises(hub.NequIPNetError) as error:
        hub.fetch(MODEL_ID)
    assert "Could not reach nequip.net" in str(error.value) and MODEL_ID in str(error.value)
    assert hub.api_url(MODEL_ID) in str(error.value)
    assert cache_files(tmp_path) == []


def test_silent_file_server_times_out(server):
    server.slow["/files/test-group_Tiny-Model-0.1.nequip.zip"] = 1.5
    with pytest.raises(hub.NequIPNetError) as error:
        hub.fetch(MODEL_ID, timeout=0.3)
    assert "timed out" in str(error.value) and "Could not download" in str(error.value)
    assert server.url("/files/test-group_Tiny-Model-0.1.nequip.zip") in str(error.value)


def test_newer_version_is_a_warning_and_the_log_asks_to_cite(server, caplog):
    server.publish(NEWER_ID, BODY, newer="test-group/Old-Model:0.2")
    with caplog.at_level(logging.INFO, logger=hub.__name__):
        with pytest.warns(UserWarning, match="newer version of .*Old-Model:0.1.*Old-Model:0.2"):
            hub.fetch(NEWER_ID)
    levels = {record.levelname: record.getMessage() for record in caplog.records}
    assert "nequip.net:test-group/Old-Model:0.2" in levels["WARNING"]
    assert any("Please cite" in record.getMessage() for record in caplog.records)


# -- offline ------------------------------------------------------------------------------


def test_offline_uses_the_cache_and_never_the_network(server, monkeypatch):
    path = hub.fetch(MODEL_ID)
    server.requests.clear()
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    assert hub.fetch(MODEL_ID) == path
    assert server.requests == []


def test_offline_without_cache_says_how_to_get_the_file(server, monkeypatch):
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    with pytest.raises(hub.NequIPNetError) as error:
        AllegroCalculator.from_nequip(MODEL_ID)
    message = str(error.value)
    for part in (
        "ALLEGRO_ASE_OFFLINE",
        f"allegro-ase models fetch {MODEL_ID}",
        "AllegroCalculator.from_nequip('Tiny-Model-0.1.nequip.zip')",
        str(hub.cached_path(MODEL_ID)),
        "ALLEGRO_ASE_CACHE",
    ):
        assert part in message
    assert server.requests == []


def test_offline_file_placed_by_hand_is_used_and_recorded(server, monkeypatch):
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    path = hub.cached_path(MODEL_ID)
    path.parent.mkdir(parents=True)
    path.write_bytes(BODY)
    assert hub.fetch(MODEL_ID) == path
    record = json.loads(path.with_name(path.name + ".json").read_text())
    assert record["sha256"] == sha256(BODY) and "by hand" in record["source"]
    path.write_bytes(BODY[:10])
    with pytest.raises(hub.ChecksumError):
        hub.fetch(MODEL_ID)
    assert server.requests == []


# -- registry and command line ------------------------------------------------------------


def test_shipped_registry_lists_the_foundation_models():
    entries = load_nequip_net_models(zoo.shipped_registry_path())
    names = {f"nequip.net:mir-group/{name}:0.1" for name in ("Allegro-OAM-L", "Allegro-MP-L")}
    names |= {f"nequip.net:mir-group/NequIP-{size}:0.1" for size in ("OAM-S", "OAM-M", "OAM-L")}
    names |= {"nequip.net:mir-group/NequIP-OAM-XL:0.1", "nequip.net:mir-group/NequIP-MP-L:0.1"}
    assert set(entries) == names
    for entry in entries.values():
        assert entry.num_species == 89 and entry.sha256 is None  # no checksum is published
        assert any("arXiv:2607.28461" in reference for reference in entry.citation)
        paper = "s41467-022-29939-5" if entry.architecture == "nequip" else "s41467-023-36329-y"
        assert any(paper in reference for reference in entry.citation)


def test_invalid_nequip_net_entry_is_refused(tmp_path):
    registry = write_registry(tmp_path, [pinned_entry("nequip.net:no-version/x", None)])
    with pytest.raises(ZooError, match="nequip.net model #0 is invalid: .*Malformed"):
        load_nequip_net_models(registry)


def test_register_keeps_the_nequip_net_list(tmp_path):
    listed = [pinned_entry(MODEL_ID, None)]
    registry = write_registry(tmp_path, listed)
    (tmp_path / "card.md").write_text("# card\n")
    from conftest import make_model

    from allegro_ase import save_model

    save_model(make_model(), tmp_path / "model.pt")
    register(tmp_path / "model.pt", "tiny", tmp_path / "card.md", registry=registry)
    assert set(load_registry(registry)) == {"tiny"}
    assert json.loads(registry.read_text())["nequip_net_models"] == listed


def test_models_list_shows_foundation_models_as_downloads(monkeypatch, capsys):
    monkeypatch.delenv(zoo.REGISTRY_ENV, raising=False)
    assert main(["models", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    row = rows["nequip.net:mir-group/NequIP-OAM-L:0.1"]
    assert "89 elements" in row and "nequip.net" in row and "download ~78.5 MB" in row
    assert "nequip.net:mir-group/Allegro-MP-L:0.1" in rows


def test_models_fetch_verify_and_info_take_ids(server, capsys):
    assert main(["models", "fetch", MODEL_ID]) == 0
    path = hub.cached_path(MODEL_ID)
    assert capsys.readouterr().out == f"{MODEL_ID}: {path}\n"
    assert main(["models", "verify", MODEL_ID]) == 0
    assert capsys.readouterr().out == f"{MODEL_ID}: ok ({path})\n"
    assert main(["models", "info", MODEL_ID]) == 0
    assert f"local file: {path} (sha256 {sha256(BODY)} verified)" in capsys.readouterr().out

    path.write_bytes(b"changed")
    assert main(["models", "verify", MODEL_ID]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["models", "fetch", MODEL_ID]) == 1
    assert "models fetch --force" in capsys.readouterr().err
    assert main(["models", "fetch", "--force", MODEL_ID]) == 0
    assert path.read_bytes() == BODY


# -- end to end ---------------------------------------------------------------------------


def test_calculator_from_id_equals_calculator_from_the_file(server):
    server.publish("nequip.net:test-group/Tiny-NequIP:0.1", PACKAGE.read_bytes())
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.symbols[[1, 3]] = "Au"
    atoms.rattle(0.05, seed=1)

    expected = atoms.copy()
    expected.calc = AllegroCalculator.from_nequip(PACKAGE, device="cpu")
    for calc in (
        AllegroCalculator.from_nequip("nequip.net:test-group/Tiny-NequIP:0.1", device="cpu"),
        AllegroCalculator.from_pretrained("nequip.net:test-group/Tiny-NequIP:0.1", device="cpu"),
    ):
        atoms.calc = calc
        assert atoms.get_potential_energy() == expected.get_potential_energy()
        np.testing.assert_array_equal(atoms.get_forces(), expected.get_forces())
    assert len(server.file_requests()) == 1  # the second load used the cache
