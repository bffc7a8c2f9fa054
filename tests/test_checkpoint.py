"""Our model files round-trip exactly and are refused when damaged, without running code."""

import copy
import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
from conftest import GEOMETRIES, calc_for

from allegro_ase import AllegroCalculator, load_model, save_model
from allegro_ase.io import CheckpointError
from allegro_ase.io.checkpoint import file_sha256


@pytest.fixture
def saved(tmp_path, model):
    path = tmp_path / "model.pt"
    sha = save_model(model, path)
    return path, sha


def test_round_trip_gives_identical_results(saved, model):
    path, sha = saved
    atoms = GEOMETRIES["triclinic"]()
    atoms.calc = calc_for(model)
    expected = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = AllegroCalculator.from_file(path, sha256=sha, device="cpu")
    assert atoms.get_potential_energy() == expected[0]
    np.testing.assert_array_equal(atoms.get_forces(), expected[1])
    np.testing.assert_array_equal(atoms.get_stress(), expected[2])
    assert atoms.calc.model.config == model.config


@pytest.mark.parametrize("duplicate", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))])
def test_copies_save_and_load_like_the_original(model, duplicate, tmp_path):
    """A copy (the trainer's EMA is a deep copy) has the original's state dict, e3nn constants
    left out, and its file loads."""
    copied = duplicate(model)
    assert copied.state_dict().keys() == model.state_dict().keys()
    save_model(copied, tmp_path / "copy.pt")
    assert load_model(tmp_path / "copy.pt").state_dict().keys() == model.state_dict().keys()


def test_file_is_plain_tensors_and_json(saved):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"metadata", "state_dict"}
    assert isinstance(payload["metadata"], str)
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())


def test_sha256_mismatch_is_refused(saved):
    path, sha = saved
    wrong = "0" * 64
    with pytest.raises(
        CheckpointError, match=f"sha256 mismatch for .*expected {wrong}, found {sha}"
    ):
        load_model(path, sha256=wrong)


def test_truncated_file_is_refused(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable allegro-ase model file"):
        load_model(truncated)


def test_tampered_weights_are_refused(saved, tmp_path):
    """Edit one stored tensor inside the archive: the embedded content checksum catches it."""
    path, _ = saved
    tampered = tmp_path / "tampered.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tampered, "w") as target:
        names = [n for n in source.namelist() if "/data/" in n and not n.endswith(".pkl")]
        victim = max(names, key=lambda n: source.getinfo(n).file_size)
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == victim:
                content = bytes([content[0] ^ 0xFF]) + content[1:]
            target.writestr(item, content)
    with pytest.raises(CheckpointError, match="has been modified since it was written"):
        load_model(tampered)


def test_pickled_code_is_never_executed(tmp_path):
    class Payload:
        def __reduce__(self):
            return (exec, ("raise SystemExit('code ran')",))

    path = tmp_path / "evil.pt"
    buffer = io.BytesIO()
    torch.save({"metadata": "{}", "state_dict": Payload()}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match="would need code execution"):
        load_model(path)


def test_saved_sha256_is_the_file_hash(saved):
    path, sha = saved
    assert file_sha256(path) == sha
    assert not path.with_name(path.name + ".partial").exists()
