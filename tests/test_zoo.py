"""The model zoo gives verified files: shipped ones with no network, remote ones downloaded
once (for real, from a local HTTP server) into the cache, and clear errors otherwise."""

import re
import shutil
from pathlib import Path

import numpy as np
import platformdirs
import pooch
import pytest
from ase import Atoms
from ase.calculators.calculator import InputError
from conftest import GEOMETRIES, calc_for, make_model
from zoo_helpers import OTHER_SHA256, entry_dict, make_local_zoo, write_registry_json

from allegro_ase import AllegroCalculator, list_models, zoo
from allegro_ase.io.checkpoint import file_sha256, read_metadata
from allegro_ase.io.registry import ModelEntry, ZooError, load_registry, register

SHIPPED_MODELS = [
    entry for entry in load_registry(zoo.shipped_registry_path()).values() if entry.shipped
]


@pytest.fixture
def local_zoo(tmp_path, monkeypatch):
    local = make_local_zoo(tmp_path, monkeypatch)
    yield local
    local.server.stop()


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the zoo tried to download")

    monkeypatch.setattr(pooch, "retrieve", refuse)


def assert_model_matches_entry(entry: ModelEntry) -> None:
    """The file resolves, has the entry's sha256 and size, and its metadata agree."""
    path = zoo.resolve(entry.name)
    assert file_sha256(path) == entry.sha256
    assert path.stat().st_size == entry.size
    metadata, _ = read_metadata(path)
    assert tuple(metadata["type_names"]) == entry.species
    assert metadata["r_max"] == entry.r_max
    assert metadata["model_dtype"] == entry.dtype
    assert entry.card_path.is_file()
    calc = AllegroCalculator.from_pretrained(entry.name, device="cpu")
    spacing = 0.4 * entry.r_max
    atoms = Atoms(
        list(entry.species), positions=[[spacing * k, 0, 0] for k in range(len(entry.species))]
    )
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())


# -- the shipped registry ---------------------------------------------------------------


def test_shipped_registry_is_valid():
    entries = load_registry(zoo.shipped_registry_path())
    for entry in entries.values():
        assert entry.card_path.is_file(), f"{entry.name}: card {entry.card_path} is missing"


@pytest.mark.parametrize("entry", SHIPPED_MODELS, ids=lambda entry: entry.name)
def test_shipped_model_loads_offline_and_matches_its_entry(entry, monkeypatch, no_network):
    monkeypatch.delenv(zoo.REGISTRY_ENV, raising=False)
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    assert_model_matches_entry(entry)


def test_list_models_is_the_registry_in_use(local_zoo):
    names = [entry.name for entry in list_models()]
    assert names == ["tiny-shipped", "tiny-remote", "tiny-bad-hash", "tiny-truncated"]


# -- shipped models ---------------------------------------------------------------------


def test_registered_shipped_model_matches_its_entry(local_zoo, no_network):
    """The same check as for the real registry, on a registry that has a model today."""
    assert_model_matches_entry(zoo.get_entry("tiny-shipped"))


def test_shipped_model_resolves_with_no_network(local_zoo, no_network):
    assert zoo.resolve("tiny-shipped") == local_zoo.root / "tiny" / "model.pt"
    assert local_zoo.server.requests == []
    assert local_zoo.cached_files() == []


def test_from_pretrained_gives_the_saved_models_results(local_zoo):
    atoms = GEOMETRIES["triclinic"]()
    atoms.calc = calc_for(make_model())
    expected = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = AllegroCalculator.from_pretrained("tiny-shipped", device="cpu")
    assert atoms.get_potential_energy() == expected[0]
    np.testing.assert_array_equal(atoms.get_forces(), expected[1])


def test_from_pretrained_passes_dtype(local_zoo):
    calc = AllegroCalculator.from_pretrained("tiny-shipped", device="cpu", dtype="float32")
    assert calc.parameters["dtype"] == "float32"


def test_element_missing_from_the_model_is_named(local_zoo):
    atoms = Atoms("CuO", positions=[[0, 0, 0], [1.8, 0, 0]])
    atoms.calc = AllegroCalculator.from_pretrained("tiny-shipped", device="cpu")
    with pytest.raises(InputError, match="no parameters for O; it knows Cu, Au, H"):
        atoms.get_potential_energy()


def test_damaged_shipped_file_is_refused(local_zoo):
    path = local_zoo.root / "tiny" / "model.pt"
    path.write_bytes(local_zoo.model_bytes[:-1])
    found = file_sha256(path)
    with pytest.raises(ZooError) as error:
        zoo.resolve("tiny-shipped")
    message = str(error.value)
    assert str(path) in message
    assert f"has sha256 {found}" in message and f"expects {local_zoo.sha256}" in message
    assert "reinstall allegro-ase" in message


def test_missing_shipped_file_says_reinstall(local_zoo):
    (local_zoo.root / "tiny" / "model.pt").unlink()
    with pytest.raises(ZooError, match="'tiny-shipped' is missing: .*reinstall allegro-ase"):
        zoo.resolve("tiny-shipped")


# -- names and registry files -----------------------------------------------------------


def test_unknown_name_suggests_close_names(local_zoo):
    with pytest.raises(
        ZooError, match="Unknown model 'Tiny-Shiped'. Did you mean 'tiny-shipped'"
    ) as error:
        zoo.resolve("Tiny-Shiped")
    assert "Known models: tiny-bad-hash, tiny-remote, tiny-shipped, tiny-truncated" in str(
        error.value
    )


def test_unknown_name_in_empty_registry(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(write_registry_json(tmp_path, [])))
    with pytest.raises(ZooError, match="Unknown model 'x': the registry .* lists no models"):
        zoo.resolve("x")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": "red"}, r"unknown keys \['colour'\]"),
        ({"sha256": "ABC"}, "sha256 'ABC' is not 64 lowercase hex digits"),
        ({"file": "../outside.pt"}, "must be a path inside the registry's folder"),
        ({"dtype": "float16"}, "dtype 'float16' must be"),
        ({"species": "CuAu"}, "species 'CuAu' must be a list"),
        ({"url": "ftp://host/x.pt"}, "must start with https://"),
    ],
)
def test_invalid_registry_entry_is_refused(tmp_path, change, message):
    entry = {**entry_dict("tiny", OTHER_SHA256, 10), **change}
    path = write_registry_json(tmp_path, [entry])
    with pytest.raises(ZooError, match=f"model #0 is invalid: .*{message}"):
        load_registry(path)


def test_duplicate_names_are_refused(tmp_path):
    path = write_registry_json(tmp_path, [entry_dict("tiny", OTHER_SHA256, 10)] * 2)
    with pytest.raises(ZooError, match="'tiny' is used by two models"):
        load_registry(path)


def test_missing_registry_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(tmp_path / "nowhere.json"))
    with pytest.raises(ZooError, match="No model registry at .*nowhere.json.*ALLEGRO_ASE_REGISTRY"):
        list_models()


def test_register_writes_the_entry_from_the_files_metadata(local_zoo):
    registry = local_zoo.root / "other.json"
    model, card = local_zoo.root / "tiny" / "model.pt", local_zoo.root / "tiny" / "card.md"
    written = register(
        model, "tiny-shipped", card, description="tiny random model", registry=registry
    )
    assert written.to_dict() == entry_dict(
        "tiny-shipped", local_zoo.sha256, len(local_zoo.model_bytes)
    )
    assert load_registry(registry) == {"tiny-shipped": written}


def test_register_refuses_a_shipped_file_outside_the_registry_folder(local_zoo, tmp_path):
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(local_zoo.model_bytes)
    with pytest.raises(ZooError, match="must be an existing file inside .*; copy it there"):
        register(
            outside, "x", local_zoo.root / "tiny" / "card.md", registry=local_zoo.root / "r.json"
        )


# -- remote models ----------------------------------------------------------------------


def test_remote_model_is_downloaded_verified_and_cached(local_zoo):
    path = zoo.resolve("tiny-remote")
    assert path.is_relative_to(local_zoo.cache)
    assert path.read_bytes() == local_zoo.model_bytes
    assert local_zoo.cached_files() == [path]
    assert zoo.resolve("tiny-remote") == path
    assert local_zoo.server.requests == ["/tiny.pt"]  # the second call used the cache


def test_cached_copy_is_used_when_the_server_is_down(local_zoo):
    zoo.resolve("tiny-remote")
    local_zoo.server.stop()
    assert zoo.resolve("tiny-remote").read_bytes() == local_zoo.model_bytes


def test_download_with_another_sha256_is_refused_and_not_kept(local_zoo):
    with pytest.raises(
        ZooError, match=f"Refused the file of model 'tiny-bad-hash'.*expected .*{OTHER_SHA256}"
    ):
        zoo.resolve("tiny-bad-hash")
    assert local_zoo.cached_files() == []


def test_interrupted_download_leaves_no_partial_file(local_zoo):
    with pytest.raises(ZooError, match="Could not download model 'tiny-truncated'"):
        zoo.resolve("tiny-truncated")
    assert local_zoo.server.requests == ["/cut.pt"]
    assert local_zoo.cached_files() == []


def test_server_down_without_a_cached_copy_is_a_clear_error(local_zoo):
    local_zoo.server.stop()
    expected = zoo.local_path(zoo.get_entry("tiny-remote"))
    with pytest.raises(
        ZooError, match="Could not download model 'tiny-remote' from http://127.0.0.1"
    ) as error:
        zoo.resolve("tiny-remote")
    assert f"no verified copy is cached at {expected}" in str(error.value)
    assert f"sha256 {local_zoo.sha256}" in str(error.value)


def test_damaged_cached_copy_is_downloaded_again(local_zoo):
    path = zoo.local_path(zoo.get_entry("tiny-remote"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"damaged")
    assert zoo.resolve("tiny-remote").read_bytes() == local_zoo.model_bytes
    assert local_zoo.server.requests == ["/tiny.pt"]


# -- offline ----------------------------------------------------------------------------


def test_offline_uses_the_verified_cached_copy(local_zoo, monkeypatch, no_network):
    path = zoo.local_path(zoo.get_entry("tiny-remote"))
    path.parent.mkdir(parents=True)
    shutil.copy(local_zoo.root / "tiny" / "model.pt", path)
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    assert zoo.resolve("tiny-remote") == path
    assert local_zoo.server.requests == []


def test_offline_without_a_cached_copy_names_the_variables_and_file(
    local_zoo, monkeypatch, no_network
):
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    with pytest.raises(
        ZooError, match="'tiny-remote' is not in the cache and ALLEGRO_ASE_OFFLINE forbids"
    ) as error:
        zoo.resolve("tiny-remote")
    message = str(error.value)
    assert str(zoo.local_path(zoo.get_entry("tiny-remote"))) in message
    assert f"cache directory {local_zoo.cache}; ALLEGRO_ASE_CACHE sets it" in message
    assert local_zoo.server.requests == []


def test_offline_damaged_cached_copy_is_refused(local_zoo, monkeypatch, no_network):
    path = zoo.local_path(zoo.get_entry("tiny-remote"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"damaged")
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    with pytest.raises(
        ZooError, match=f"expects {local_zoo.sha256} .* Delete it \\(rm {re.escape(str(path))}\\)"
    ):
        zoo.resolve("tiny-remote")


@pytest.mark.parametrize(
    "value, offline",
    [("1", True), ("true", True), ("YES", True), ("", False), ("0", False), ("false", False)],
)
def test_offline_flag_values(monkeypatch, value, offline):
    monkeypatch.setenv(zoo.OFFLINE_ENV, value)
    assert zoo.is_offline() is offline


def test_cache_dir_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(zoo.CACHE_ENV, raising=False)
    assert zoo.cache_dir() == Path(platformdirs.user_cache_dir("allegro-ase"))
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path))
    assert zoo.cache_dir() == tmp_path
