"""Files shaped like the nequip.net foundation models load without nequip and match the reference.

Fixtures: ``tests/data/foundation/``, made by ``tools/make_foundation_fixtures.py`` with the
reference framework (nequip 0.19.1 / nequip-allegro 0.8.3, and an older pair, see
``tests/data/README.md``): small look-alikes of NequIP-OAM-L (``FullNequIPGNNModel``, 89 types,
ZBL, wrapped in ``nequip.model.modify``), Allegro-OAM-L (``allegro_models.AllegroModel``), a
fine-tuned model (``ModelFromPackage``/``ModelFromCheckpoint`` + ``modify_PerTypeScaleShift``),
the spline embedding and files written by the older versions, each as ``.ckpt`` and
``.nequip.zip``, with the reference ``NequIPCalculator``'s outputs.
"""

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from allegro_ase import AllegroCalculator
from allegro_ase.nequip_files import NequIPFileError, load_nequip_model
from allegro_ase.nequip_files.builders import config_from_reference
from allegro_ase.nequip_files.module_tree import builder_kwargs_from_tree
from allegro_ase.nequip_files.package import read_package

DATA = Path(__file__).parent / "data" / "foundation"
REFERENCE = torch.load(DATA / "reference_outputs.pt", weights_only=True)
OUTPUTS = REFERENCE["outputs"]
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}  # eV, eV/Å, eV/Å^3
# The reference computes ZBL's Z^0.23 in the model dtype, and float32 pow varies by an ulp or
# two with vectorisation: 2e-7 of the value, e.g. 6e-5 eV of a 330 eV atom at 0.8 Å.
FLOAT32_ZBL_RTOL = 1e-6


def _atoms(structure: dict) -> Atoms:
    return Atoms(
        numbers=np.asarray(structure["numbers"]),
        positions=np.asarray(structure["positions"], dtype=float),
        cell=np.asarray(structure["cell"], dtype=float),
        pbc=np.asarray(structure["pbc"], dtype=bool),
    )


def _errors(calc: AllegroCalculator, structures: list[dict], rtol: float = 0.0) -> dict[str, float]:
    """Largest |ours - reference| per quantity, less ``rtol`` times the reference's largest."""
    errors = dict.fromkeys(("energy", "energies", "forces", "stress"), 0.0)
    for structure in structures:
        atoms = _atoms(structure)
        atoms.calc = calc
        found = {
            "energy": _excess(atoms.get_potential_energy(), structure["energy"], rtol),
            "energies": _excess(atoms.get_potential_energies(), structure["energies"], rtol),
            "forces": _excess(atoms.get_forces(), structure["forces"], rtol),
        }
        stress = np.asarray(structure["stress"], dtype=float)
        if np.all(np.isfinite(stress)):
            found["stress"] = _excess(atoms.get_stress(), stress, rtol)
        errors = {key: max(errors[key], found.get(key, 0.0)) for key in errors}
    return errors


def _excess(ours, reference, rtol: float) -> float:
    reference = np.asarray(reference, dtype=float)
    return float(np.max(np.abs(np.asarray(ours) - reference)) - rtol * np.max(np.abs(reference)))


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_foundation_shaped_file_reproduces_the_reference(name):
    calc = AllegroCalculator.from_nequip(DATA / name, device="cpu")
    dtype = calc.model.config.model_dtype
    zbl = calc.model.pair_potential is not None and dtype == "float32"
    errors = _errors(calc, OUTPUTS[name], FLOAT32_ZBL_RTOL if zbl else 0.0)
    tolerance = TOLERANCE[dtype]
    assert max(errors.values()) < tolerance, errors


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.nequip.zip")))
def test_module_tree_gives_the_same_model_as_the_config(name):
    """Where a package's config names a builder, its module tree must describe the same model."""
    section, graph_model, weights, _ = read_package(DATA / name)
    from_tree = load_nequip_model(DATA / name)
    tree_config = config_from_reference(builder_kwargs_from_tree(graph_model))
    assert type(tree_config) is type(from_tree.config)
    assert tree_config.type_names == from_tree.config.type_names
    assert len(tree_config.type_names) > 2 or "spline" in name


def test_zbl_term_is_rebuilt_where_the_file_has_one():
    models = {p.name: load_nequip_model(p) for p in DATA.glob("nequip-oam-like*.nequip.zip")}
    assert models and all(m.pair_potential is not None for m in models.values())
    assert all(m.config.pair_potential["units"] == "metal" for m in models.values())


def test_finetuned_checkpoint_without_its_base_file_names_it(tmp_path):
    """The base file is looked up at its recorded path and beside the checkpoint, else named."""

    def move_base(hyper):
        wrapped = hyper["model"]["model"]
        key = "checkpoint_path" if "checkpoint_path" in wrapped else "package_path"
        wrapped[key] = "/nonexistent/runs/" + Path(wrapped[key]).name

    for source in DATA.glob("nequip-finetuned*.ckpt"):
        path = _edited_checkpoint(tmp_path, source.name, move_base)
        with pytest.raises(NequIPFileError, match=r"fine-tuned from another file.*/nonexistent/"):
            load_nequip_model(path)
        base = Path(torch.load(source, weights_only=True)["hyper_parameters"]["model"]["model"]
                    .get("checkpoint_path") or "x")  # fmt: skip
        if base.is_file():  # beside the checkpoint, it is found
            shutil.copy(base, tmp_path / base.name)
            assert load_nequip_model(path).pair_potential is not None


def test_finetuned_package_loads_alone(tmp_path):
    for source in DATA.glob("nequip-finetuned*.nequip.zip"):
        shutil.copy(source, tmp_path / source.name)
        assert load_nequip_model(tmp_path / source.name).pair_potential is not None


def _edited_checkpoint(tmp_path: Path, source: str, edit) -> Path:
    checkpoint = torch.load(DATA / source, weights_only=True)
    edit(checkpoint["hyper_parameters"])
    path = tmp_path / source
    torch.save(checkpoint, path)
    return path


def test_speed_modifiers_are_ignored_with_a_log_line(tmp_path, caplog):
    def wrap(hyper):
        hyper["model"] = {
            "_target_": "nequip.model.modify",
            "model": hyper["model"],
            "modifiers": [{"modifier": "enable_OpenEquivariance"}],
        }

    path = _edited_checkpoint(tmp_path, "nequip-oam-like-f64.ckpt", wrap)
    with caplog.at_level(logging.INFO, logger="allegro_ase.nequip_files"):
        wrapped = load_nequip_model(path)
    assert "ignoring enable_OpenEquivariance" in caplog.text
    plain = load_nequip_model(DATA / "nequip-oam-like-f64.ckpt")
    for key, value in plain.state_dict().items():
        assert torch.equal(value, wrapped.state_dict()[key]), key


def test_unknown_modifier_is_refused_by_name(tmp_path):
    def wrap(hyper):
        hyper["model"] = {
            "_target_": "nequip.model.modify",
            "model": hyper["model"],
            "modifiers": [{"modifier": "my_custom_modifier"}],
        }

    path = _edited_checkpoint(tmp_path, "nequip-oam-like-f64.ckpt", wrap)
    with pytest.raises(NequIPFileError, match="modifier 'my_custom_modifier'"):
        load_nequip_model(path)
