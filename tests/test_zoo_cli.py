"""`allegro-ase models ...` lists, describes, fetches, verifies and registers zoo models."""

import json

import pytest
from zoo_helpers import CARD_TEXT, make_local_zoo

from allegro_ase import zoo
from allegro_ase.cli import main
from allegro_ase.io.registry import load_registry


@pytest.fixture
def local_zoo(tmp_path, monkeypatch):
    local = make_local_zoo(tmp_path, monkeypatch)
    yield local
    local.server.stop()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_models_list_shows_every_model_and_whether_it_is_local(local_zoo, capsys):
    status, out, _ = run(capsys, "models", "list")
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split()[:7] == "NAME VERSION SPECIES R_MAX/Å SIZE SOURCE LOCAL".split()
    by_name = {row.split()[0]: row.split() for row in rows}
    assert set(by_name) == {"tiny-shipped", "tiny-remote", "tiny-bad-hash", "tiny-truncated"}
    size = f"{len(local_zoo.model_bytes) / 1e3:.1f}"
    expected = ["1", "Cu", "Au", "H", "4", size, "kB", "shipped", "yes"]
    assert by_name["tiny-shipped"][1:10] == expected
    assert by_name["tiny-remote"][8:10] == ["remote", "no"]


def test_models_list_says_when_the_registry_is_empty(tmp_path, monkeypatch, capsys):
    registry = tmp_path / "registry.json"
    registry.write_text(
        json.dumps({"format": "allegro-ase-registry", "format_version": 1, "models": []})
    )
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(registry))
    assert run(capsys, "models", "list")[:2] == (0, f"No models in the registry {registry}.\n")


def test_models_info_prints_entry_metadata_and_card(local_zoo, capsys):
    status, out, _ = run(capsys, "models", "info", "tiny-shipped")
    assert status == 0
    assert f"sha256: {local_zoo.sha256}" in out
    assert "species: Cu Au H" in out
    assert "(sha256 verified)" in out
    assert "  architecture: allegro" in out
    assert "  type_names: ['Cu', 'Au', 'H']" in out
    assert f"card: {local_zoo.root / 'tiny' / 'card.md'}" in out
    assert out.endswith(CARD_TEXT + "\n")


def test_models_info_of_a_remote_model_does_not_download(local_zoo, capsys):
    status, out, _ = run(capsys, "models", "info", "tiny-remote")
    assert status == 0
    assert "local file: none yet (allegro-ase models fetch tiny-remote puts it at" in out
    assert local_zoo.server.requests == []


def test_models_fetch_downloads_into_the_cache(local_zoo, capsys):
    status, out, _ = run(capsys, "models", "fetch", "tiny-remote")
    assert status == 0
    assert out == f"tiny-remote: {zoo.local_path(zoo.get_entry('tiny-remote'))}\n"
    assert local_zoo.cached_files() == [zoo.local_path(zoo.get_entry("tiny-remote"))]


def test_models_verify_passes_then_fails_on_a_damaged_file(local_zoo, capsys):
    status, out, _ = run(capsys, "models", "verify")
    assert status == 0
    assert "tiny-shipped: ok" in out and "tiny-remote: not cached (skipped)" in out
    (local_zoo.root / "tiny" / "model.pt").write_bytes(b"damaged")
    status, out, err = run(capsys, "models", "verify", "tiny-shipped")
    assert status == 1
    assert f"tiny-shipped: FAILED: {local_zoo.root / 'tiny' / 'model.pt'}" in out
    assert "1 model(s) failed verification: tiny-shipped" in err


def test_unknown_model_exits_with_a_suggestion(local_zoo, capsys):
    status, out, err = run(capsys, "models", "info", "tiny-shiped")
    assert status == 1
    assert err.startswith(
        "allegro-ase: error: Unknown model 'tiny-shiped'. Did you mean 'tiny-shipped'"
    )


def test_download_error_exits_with_the_message(local_zoo, capsys):
    status, _, err = run(capsys, "models", "fetch", "tiny-truncated")
    assert status == 1
    assert "allegro-ase: error: Could not download model 'tiny-truncated'" in err


def test_models_register_writes_an_entry_that_resolves(local_zoo, capsys):
    folder = local_zoo.root / "tiny2"
    folder.mkdir()
    (folder / "model.pt").write_bytes(local_zoo.model_bytes)
    (folder / "card.md").write_text(CARD_TEXT)
    argv = ["models", "register", str(folder / "model.pt"), "--name", "tiny2", "--card"]
    status, out, _ = run(capsys, *argv, str(folder / "card.md"), "--version", "2")
    assert status == 0
    assert json.loads(out[: out.rindex("}") + 1])["file"] == "tiny2/model.pt"
    entry = load_registry(zoo.registry_path())["tiny2"]
    assert (entry.version, entry.species, entry.r_max) == ("2", ("Cu", "Au", "H"), 4.0)
    assert zoo.resolve("tiny2") == folder / "model.pt"


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as error:
        main([])
    assert error.value.code == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err
