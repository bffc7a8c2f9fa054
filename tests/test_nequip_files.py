"""Files written by the reference framework load without nequip and reproduce its numbers.

Fixtures: ``tests/data/nequip_files/`` made by ``tools/make_nequip_file_fixtures.py`` with
nequip 0.19.1 + nequip-allegro 0.8.3 (see ``tests/data/README.md``): a float64 Allegro and a
float32 NequIP model trained for 4 steps with EMA, each as ``.ckpt``, ``.nequip.zip`` and
``.nequip.pth`` (``.nequip.pt2`` only when made locally), plus the reference
``NequIPCalculator``'s outputs for every file.
"""

import json
import os
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from allegro_ase import AllegroCalculator
from allegro_ase.compiled_calculator import NequIPCompiledCalculator
from allegro_ase.nequip_files import NequIPFileError, load_nequip_model, model_from_reference
from allegro_ase.nequip_files.checkpoint import read_checkpoint
from allegro_ase.nequip_files.rebuild import architecture_of_file

DATA = Path(__file__).parent / "data" / "nequip_files"
REFERENCE = torch.load(DATA / "reference_outputs.pt", weights_only=True)["outputs"]
SUFFIXES = {"ckpt": ".ckpt", "zip": ".nequip.zip", "pth": ".nequip.pth", "pt2": ".nequip.pt2"}
# eV, eV/Å, eV/Å^3: float64 as required; float32 allows for float32 rounding of the weights
TOLERANCES = {"allegro": (1e-6, 1e-6, 1e-8), "nequip": (1e-5, 1e-5, 1e-7)}  # f64, f32 models
ROUTES = {"ckpt": AllegroCalculator, "zip": AllegroCalculator}
ROUTES |= {"pth": NequIPCompiledCalculator, "pt2": NequIPCompiledCalculator}


def _atoms(structure):
    return Atoms(
        numbers=structure["numbers"].numpy(),
        positions=structure["positions"].numpy(),
        cell=structure["cell"].numpy(),
        pbc=structure["pbc"].numpy(),
    )


def _max_errors(calc, structures):
    """Largest |Δ| of energy, per-atom energies, forces and stress over ``structures``."""
    errors = np.zeros(4)
    for structure in structures:
        atoms = _atoms(structure)
        atoms.calc = calc
        found = [
            abs(atoms.get_potential_energy() - structure["energy"]),
            np.abs(atoms.get_potential_energies() - structure["energies"].numpy()).max(),
            np.abs(atoms.get_forces() - structure["forces"].numpy()).max(),
            np.abs(atoms.get_stress() - structure["stress"].numpy()).max()
            if atoms.pbc.any()
            else 0,
        ]
        errors = np.maximum(errors, found)
    return errors


CASES = [(arch, kind) for arch in REFERENCE for kind in SUFFIXES]


@pytest.mark.parametrize("architecture, kind", CASES, ids=[f"{a}-{k}" for a, k in CASES])
def test_reference_file_reproduces_reference_outputs(architecture, kind):
    path = DATA / f"{architecture}{SUFFIXES[kind]}"
    if not path.exists():
        pytest.skip(
            f"{path.name} is machine-specific; make it with make_nequip_file_fixtures.py --pt2"
        )
    calc = AllegroCalculator.from_nequip(path, device="cpu", allow_compiled=True)
    assert type(calc) is ROUTES[kind]
    assert "nequip" not in sys.modules and "allegro" not in sys.modules
    energy_tol, force_tol, stress_tol = TOLERANCES[architecture]
    errors = _max_errors(calc, REFERENCE[architecture][kind])
    np.testing.assert_array_less(errors, [energy_tol, energy_tol, force_tol, stress_tol])


@pytest.mark.parametrize("architecture", list(REFERENCE))
def test_checkpoint_is_evaluated_with_its_ema_weights(architecture):
    path = DATA / f"{architecture}.ckpt"
    kwargs, ema_state, prefix = read_checkpoint(path, architecture_of_file)
    raw_state = torch.load(path, weights_only=True)["state_dict"]
    changed = [
        k for k in raw_state if k.startswith(prefix) and not torch.equal(raw_state[k], ema_state[k])
    ]
    assert changed, "the EMA and raw weights should differ after a few training steps"
    reference = REFERENCE[architecture]["ckpt"]
    energy_tol = TOLERANCES[architecture][0]
    raw = AllegroCalculator(model_from_reference(kwargs, raw_state, prefix), device="cpu")
    assert _max_errors(raw, reference)[0] > 100 * energy_tol  # raw weights: other numbers
    ema = AllegroCalculator(model_from_reference(kwargs, ema_state, prefix), device="cpu")
    assert _max_errors(ema, reference)[0] < energy_tol


@pytest.mark.parametrize("architecture", list(REFERENCE))
def test_package_holds_the_same_weights_as_the_checkpoint(architecture):
    from_ckpt = load_nequip_model(DATA / f"{architecture}.ckpt").state_dict()
    from_zip = load_nequip_model(DATA / f"{architecture}.nequip.zip").state_dict()
    assert from_ckpt.keys() == from_zip.keys()
    assert all(torch.equal(from_ckpt[k], from_zip[k]) for k in from_ckpt)


def _truncated(path, tmp_path):
    out = tmp_path / path.name
    out.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return out


def test_truncated_checkpoint_is_refused(tmp_path):
    with pytest.raises(NequIPFileError, match="allegro.ckpt is not a readable checkpoint"):
        AllegroCalculator.from_nequip(_truncated(DATA / "allegro.ckpt", tmp_path), device="cpu")


def test_truncated_package_is_refused(tmp_path):
    path = _truncated(DATA / "allegro.nequip.zip", tmp_path)
    with pytest.raises(NequIPFileError, match="not a readable nequip-package archive"):
        AllegroCalculator.from_nequip(path, device="cpu")


def _with_member(path, tmp_path, member, data):
    """Copy of the archive at ``path`` with ``<root>/<member>`` replaced by ``data``."""
    out = tmp_path / path.name
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            replace = info.filename.split("/", 1)[1] == member
            dst.writestr(info.filename, data if replace else src.read(info))
    return out


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_package_pickle_with_an_unexpected_global_is_refused_unrun(tmp_path):
    marker = tmp_path / "it-ran"
    payload = pickle.dumps({"sole_model": _RunsACommand(marker)}, protocol=3)
    path = _with_member(DATA / "nequip.nequip.zip", tmp_path, "model/eager_model.pkl", payload)
    with pytest.raises(NequIPFileError, match=r"refused.*global (posix|os|nt)\.system"):
        AllegroCalculator.from_nequip(path, device="cpu")
    assert not marker.exists()


def test_package_with_damaged_tensor_storage_is_refused(tmp_path):
    path = tmp_path / "allegro.nequip.zip"
    with zipfile.ZipFile(DATA / path.name) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, data[:-8] if info.filename.endswith(".storage") else data)
    with pytest.raises(NequIPFileError, match="Storage .* bytes.*The archive is damaged"):
        AllegroCalculator.from_nequip(path, device="cpu")


class _NotPlainData:
    pass


def test_checkpoint_with_a_foreign_object_is_refused(tmp_path):
    checkpoint = torch.load(DATA / "nequip.ckpt", weights_only=True)
    checkpoint["callbacks"] = _NotPlainData()
    path = tmp_path / "nequip.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(
        NequIPFileError,
        match=r"only load by running code \((tests\.)?test_nequip_files\._NotPlainData\)",
    ):
        AllegroCalculator.from_nequip(path, device="cpu")


def test_checkpoint_with_unresolved_data_statistics_is_refused(tmp_path):
    checkpoint = torch.load(DATA / "nequip.ckpt", weights_only=True)
    stat = "${training_data_stats:num_neighbors_mean}"
    checkpoint["hyper_parameters"]["model"]["avg_num_neighbors"] = stat
    path = tmp_path / "nequip.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(NequIPFileError, match=r"need the training run.*avg_num_neighbors"):
        AllegroCalculator.from_nequip(path, device="cpu")


@pytest.mark.parametrize("scalars", [8, 6])
def test_allegro_package_without_an_embedding_size_uses_the_scalar_width(tmp_path, scalars):
    """nequip-allegro's radial_chemical_embed_dim defaults to num_scalar_features."""
    source = DATA / "allegro.nequip.zip"
    with zipfile.ZipFile(source) as archive:
        text = archive.read("allegro.nequip/model/config.yaml").decode()
    assert "radial_chemical_embed_dim: 8" in text and "num_scalar_features: 8" in text
    text = text.replace("    radial_chemical_embed_dim: 8\n", "")
    text = text.replace("num_scalar_features: 8", f"num_scalar_features: {scalars}")
    path = _with_member(source, tmp_path, "model/config.yaml", text.encode())
    if scalars == 8:  # the same model: it loads and gives the file's numbers
        structures = REFERENCE["allegro"]["zip"]
        errors = _max_errors(AllegroCalculator.from_nequip(path, device="cpu"), structures)
        assert errors.max() < 1e-10  # float64 fixture
    else:  # the config now describes another model than the packaged weights
        with pytest.raises(NequIPFileError, match="num_scalar_features"):
            AllegroCalculator.from_nequip(path, device="cpu")


def test_fine_tuned_model_without_its_architecture_is_refused(tmp_path):
    checkpoint = torch.load(DATA / "nequip.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["model"] = {
        "_target_": "nequip.model.ModelFromPackage",
        "package_path": "foundation.nequip.zip",
    }
    path = tmp_path / "nequip.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(NequIPFileError, match="ModelFromPackage.*does not record the architecture"):
        AllegroCalculator.from_nequip(path, device="cpu")


@pytest.mark.parametrize("suffix", [".nequip.pth", ".nequip.pt2"])
def test_compiled_files_need_the_opt_in(suffix, tmp_path):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"never read")
    with pytest.raises(NequIPFileError, match="runs compiled code.*allow_compiled=True"):
        AllegroCalculator.from_nequip(path, device="cpu")


def test_compiled_model_keeps_its_dtype():
    with pytest.raises(ValueError, match="compiled in float32 and cannot run in float64"):
        AllegroCalculator.from_nequip(
            DATA / "nequip.nequip.pth", device="cpu", dtype="float64", allow_compiled=True
        )


def test_other_file_names_are_refused_with_the_supported_ones():
    with pytest.raises(NequIPFileError, match=r"expected a name ending in \.ckpt, \.nequip\.zip"):
        AllegroCalculator.from_nequip("model.pt", device="cpu")


def test_loading_a_reference_file_leaves_global_state_alone():
    dtype, rng = torch.get_default_dtype(), torch.random.get_rng_state()
    AllegroCalculator.from_nequip(DATA / "nequip.nequip.zip", device="cpu")
    assert torch.get_default_dtype() == dtype
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_packaged_model_is_read_without_importing_archive_code():
    with zipfile.ZipFile(DATA / "allegro.nequip.zip") as archive:
        assert any(name.endswith("nequip/nn/graph_model.py") for name in archive.namelist())
    before = set(sys.modules)
    load_nequip_model(DATA / "allegro.nequip.zip")
    assert not {m for m in set(sys.modules) - before if m.split(".")[0] in {"nequip", "allegro"}}


def test_compiled_model_gets_contiguous_float64_and_int64_inputs():
    from allegro_ase.graph import AtomicGraph
    from allegro_ase.nequip_files.compiled import CompiledNequIPModel

    metadata = {"r_max": "4.5", "type_names": "Cu Au", "per_edge_type_cutoff": "4.5 4.0 4.2 4.2"}
    model = CompiledNequIPModel(None, "aotinductor", metadata)
    positions = torch.arange(18, dtype=torch.float32).reshape(3, 6)[:, ::2]  # strided float32
    graph = AtomicGraph(
        pos=positions,
        atom_types=torch.tensor([0, 1, 0], dtype=torch.int32),
        cell=torch.eye(3).T,
        edge_index=torch.tensor([[0, 1, 2, 9], [1, 0, 0, 9]])[:, :3],
        cell_shifts=torch.zeros(3, 3, dtype=torch.float32),
    )
    inputs = model.inputs(graph)
    assert all(t.is_contiguous() and t.storage_offset() == 0 for t in inputs.values())
    assert (
        inputs["pos"].dtype
        == inputs["cell"].dtype
        == inputs["edge_cell_shift"].dtype
        == torch.float64
    )
    assert inputs["edge_index"].dtype == inputs["atom_types"].dtype == torch.int64
    assert inputs["cell"].shape == (1, 3, 3)
    np.testing.assert_array_equal(model.cutoff_matrix, [[4.5, 4.0], [4.2, 4.2]])  # row = centre


def test_pt2_for_the_pair_allegro_ghost_atom_layout_is_refused(tmp_path):
    metadata = {"r_max": "4.5", "type_names": "Cu Au", "AOTI_DEVICE_KEY": "cpu",
                "nequip_aoti_inputs": "pos edge_index atom_types",
                "nequip_aoti_outputs": "atomic_energy forces virial"}  # fmt: skip
    path = tmp_path / "model.nequip.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "model/data/aotinductor/model/x.wrapper_metadata.json", json.dumps(metadata)
        )
    with pytest.raises(NequIPFileError, match="takes \\['pos', 'edge_index', 'atom_types'\\]"):
        AllegroCalculator.from_nequip(path, device="cpu", allow_compiled=True)
