"""Fine-tuning (``init`` in the training config): a foundation-shaped model learns EMT frames.

The initial model has the 89 chemical-symbol types of the nequip.net foundation models and
random weights; the user's data are rattled Cu/Au cells labelled by EMT.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import emt_frames

from allegro_ase.conversion import SpeciesMap
from allegro_ase.datasets import FrameWriter, read_hdf5
from allegro_ase.io import load_model, save_model
from allegro_ase.models import AllegroConfig, AllegroModel
from allegro_ase.training import (
    TrainConfig,
    Trainer,
    evaluate,
    frame_to_graph,
    join,
    predict,
    prepare,
)
from allegro_ase.zoo import resolve

# the type names of the nequip.net foundation models: H..Bi (Z 1-83), then Ac..Pu
TYPES89 = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As "
    "Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd "
    "Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Ac Th Pa U Np Pu"
).split()
PRESENT = ("Cu", "Au")
FOUNDATION = Path(__file__).parent / "data" / "foundation" / "nequip-oam-like.nequip.zip"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "emt.h5"
    with FrameWriter(path, "EMT") as writer:
        writer.append(emt_frames(12))
    return path


@pytest.fixture(scope="module")
def foundation(tmp_path_factory) -> Path:
    """A small Allegro model with 89 types, random weights and DFT-like shifts, as our .pt."""
    rng = np.random.default_rng(7)
    config = AllegroConfig(
        type_names=TYPES89,
        r_max=4.0,
        l_max=1,
        avg_num_neighbors=20.0,
        num_layers=2,
        num_scalar_features=8,
        num_tensor_features=2,
        num_bessels=4,
        bessel_trainable=True,
        radial_chemical_embed_dim=8,
        scalar_embed_mlp_hidden_layers_width=8,
        allegro_mlp_hidden_layers_width=8,
        readout_mlp_hidden_layers_width=4,
        per_type_energy_shifts={name: float(-3.0 + rng.normal()) for name in TYPES89},
        per_type_energy_scales=0.3,
        per_type_energy_scales_trainable=True,
        seed=11,
    )
    path = tmp_path_factory.mktemp("foundation") / "foundation.pt"
    save_model(AllegroModel(config), path)
    return path


def config_for(dataset: Path, out: Path, init: dict, **changes) -> TrainConfig:
    values = dict(
        dataset=str(dataset),
        output_dir=str(out),
        seed=2,
        split={"train": 8, "val": 2},
        init=init,
        loss={"energy_per_atom": 1.0, "forces": 1.0, "stress": 1.0},
        optimizer={"lr": 0.005},
        batch_size=4,
        max_epochs=3,
        device="cpu",
    )
    values.update(changes)
    return TrainConfig.from_dict(values)


def initial_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path).state_dict()


def test_fine_tuning_lowers_the_error_on_the_users_frames(dataset, foundation, tmp_path):
    init = {"model": str(foundation), "fit_shifts": True}
    config = config_for(dataset, tmp_path, init, max_epochs=10, optimizer={"lr": 0.01})
    trainer = Trainer(config, progress=False)
    graphs = trainer.data.graphs
    initial = load_model(foundation)
    summary = trainer.fit()
    tuned = load_model(tmp_path / "model.pt")
    for frames in (graphs["train"], graphs["val"] + graphs["test"]):
        before, after = (evaluate(model, frames).summary() for model in (initial, tuned))
        assert after["forces_mae"] < 0.9 * before["forces_mae"]
        assert after["energy_per_atom_mae"] < before["energy_per_atom_mae"]
    assert summary["epochs_run"] == 10


def test_frozen_parameters_stay_bitwise_and_the_others_move(dataset, foundation, tmp_path):
    freeze = ["two_body_embed", r"latents\.0\..*"]
    config = config_for(dataset, tmp_path, {"model": str(foundation), "freeze": freeze})
    trainer = Trainer(config, progress=False)
    trainer.fit()
    initial = initial_tensors(foundation)
    assert trainer.frozen and all(
        name.startswith(("two_body_embed.", "latents.0.")) for name in trainer.frozen
    )
    trained = sum(len(group["params"]) for group in trainer.optimizer.param_groups)
    assert trained == len(list(trainer.model.parameters())) - len(trainer.frozen)
    for model in (trainer.model, trainer.ema, load_model(tmp_path / "model.pt")):
        for name, value in model.named_parameters():
            if name in trainer.frozen:
                assert torch.equal(value, initial[name]), name
            else:
                assert not torch.equal(value, initial[name]), name


def test_fit_shifts_changes_only_the_shifts_of_elements_in_the_data(dataset, foundation, tmp_path):
    config = config_for(dataset, tmp_path, {"model": str(foundation), "fit_shifts": True})
    data = prepare(config)
    old = load_model(foundation).scale_shift.shifts
    new = torch.tensor(
        [data.model_config["per_type_energy_shifts"][name] for name in TYPES89],
        dtype=torch.float64,
    )
    changed = {TYPES89[t] for t in torch.nonzero(new != old).view(-1).tolist()}
    assert changed == set(PRESENT)
    # least squares: the residuals of the refitted model are orthogonal to the type counts
    model = Trainer(config, data, progress=False).model
    batch = join(data.graphs["train"])
    residual = batch.energy - predict(model, batch, create_graph=False).energy.detach()
    counts = torch.stack(
        [torch.bincount(g.atom_types, minlength=89) for g in data.graphs["train"]]
    ).to(torch.float64)
    normal_equations = counts.T @ residual
    assert normal_equations.abs().max() < 1e-8 * residual.abs().max() * counts.sum()


def test_given_shifts_replace_only_the_named_types(dataset, foundation, tmp_path):
    model = {"per_type_energy_shifts": {"Cu": -1.5}}
    data = prepare(config_for(dataset, tmp_path, {"model": str(foundation)}, model=model))
    old = load_model(foundation).scale_shift.shifts
    given = data.model_config["per_type_energy_shifts"]
    assert given["Cu"] == -1.5
    assert all(given[name] == float(old[t]) for t, name in enumerate(TYPES89) if name != "Cu")


def test_resumed_fine_tuning_matches_an_uninterrupted_one(dataset, foundation, tmp_path):
    init = {"model": str(foundation), "fit_shifts": True, "freeze": ["readout"]}
    Trainer(config_for(dataset, tmp_path / "whole", init), progress=False).fit()
    Trainer(config_for(dataset, tmp_path / "cut", init, max_epochs=2), progress=False).fit()
    Trainer(config_for(dataset, tmp_path / "cut", init, max_epochs=3), progress=False).fit()
    whole, cut = (
        torch.load(tmp_path / name / "trainer_state.pt", weights_only=True)
        for name in ("whole", "cut")
    )
    for key in ("model", "ema", "optimizer"):
        assert _equal(whole[key], cut[key]), key
    for name in ("whole", "cut"):
        saved = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        assert saved["init"] == {**init, "freeze": ["readout"]}
    other = config_for(dataset, tmp_path / "cut", {**init, "fit_shifts": False})
    with pytest.raises(RuntimeError, match=r"different \['init'\]"):
        Trainer(other, progress=False).fit()


def _equal(a, b) -> bool:
    """Nested dicts, lists and tensors equal bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_saved_model_loads_with_all_types_and_matches_the_trainers_ema(
    dataset, foundation, tmp_path
):
    init = {"model": str(foundation), "fit_shifts": True}
    config = config_for(dataset, tmp_path, init, max_epochs=1, model={"model_dtype": "float64"})
    trainer = Trainer(config, progress=False)
    trainer.fit()
    saved = load_model(tmp_path / "model.pt")
    assert saved.type_names == tuple(TYPES89)
    assert saved.config.model_dtype == "float64"
    assert saved.config.avg_num_neighbors == load_model(foundation).config.avg_num_neighbors
    batch = join(trainer.data.graphs["test"])
    expected, got = predict(trainer.ema, batch, False), predict(saved, batch, False)
    for name in ("energy", "forces", "virial"):
        assert torch.equal(getattr(got, name), getattr(expected, name)), name


def test_fine_tuning_a_reference_package_through_the_command_line(dataset, tmp_path, capsys):
    if not FOUNDATION.is_file():
        pytest.skip(f"{FOUNDATION} (made by tools/make_foundation_fixtures.py) is absent")
    from allegro_ase.cli import main
    from allegro_ase.nequip_files import load_nequip_model

    values = {
        "dataset": str(dataset),
        "output_dir": str(tmp_path / "run"),
        "split": {"train": 8, "val": 2},
        "init": {"model": str(FOUNDATION), "fit_shifts": True, "freeze": ["layers.0"]},
        "optimizer": {"lr": 0.002},
        "max_epochs": 2,
        "device": "cpu",
    }
    path = tmp_path / "finetune.yaml"
    path.write_text(yaml.safe_dump(values))
    assert main(["train", str(path), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs_run"] == 2
    initial = load_nequip_model(FOUNDATION)
    tuned = load_model(tmp_path / "run" / "model.pt")
    assert tuned.type_names == initial.type_names and len(tuned.type_names) == 89
    assert tuned.config.pair_potential == initial.config.pair_potential  # ZBL kept
    state = initial.state_dict()
    for name, value in tuned.named_parameters():
        if name.startswith("layers.0."):
            assert torch.equal(value, state[name]), name
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    species = SpeciesMap(initial.type_names)
    frames = [frame_to_graph(read_hdf5(dataset)[i], species, initial.r_max) for i in split["train"]]
    before, after = (evaluate(m, frames).summary()["forces_mae"] for m in (initial, tuned))
    assert after < before


def test_a_zoo_name_starts_from_the_shipped_models_weights(dataset, tmp_path):
    config = config_for(dataset, tmp_path, {"model": "nequip-emt-metals"}, model={"r_max": 5.0})
    trainer = Trainer(config, progress=False)
    shipped = load_model(resolve("nequip-emt-metals"))
    assert trainer.data.architecture == "nequip"
    assert trainer.model.config == shipped.config
    for name, value in shipped.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], value), name


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"init": {"lr": 1.0}}, ValueError, r"Unknown keys in init: \['lr'\]"),
        ({"model": {"num_layers": 3}}, ValueError, r"would change them: num_layers = 3 \(it has 2"),
        ({"model": {"avg_num_neighbors": 9.0}}, ValueError, "avg_num_neighbors = 9.0"),
        (
            {"init": {"freeze": ["layers.0"]}},
            ValueError,
            r"'layers.0' matches no parameter.*"
            r"top-level modules are \['cutoff', 'bessel', 'two_body_embed'",
        ),
        ({"architecture": "nequip"}, ValueError, "the initial model is 'allegro'"),
        (
            {"init": {"fit_shifts": True}, "model": {"per_type_energy_shifts": 0.0}},
            ValueError,
            "either init.fit_shifts or model.per_type_energy_shifts",
        ),
        ({"init": {"model": "no-such-model"}}, ValueError, "is not a model file"),
        ({"init": {"model": "missing.pt"}}, FileNotFoundError, "no such model file"),
    ],
)
def test_bad_fine_tuning_configs_are_refused_clearly(
    dataset, foundation, tmp_path, change, error, message
):
    init = {"model": str(foundation), **change.pop("init", {})}
    with pytest.raises(error, match=message):
        Trainer(config_for(dataset, tmp_path, init, **change), progress=False)


def test_data_with_an_element_the_model_lacks_is_refused(foundation, tmp_path):
    frames = emt_frames(4)
    frames[2].numbers[0] = 95  # americium: not among the 89 types
    config = config_for(
        tmp_path / "unused.h5", tmp_path, {"model": str(foundation)}, split={"train": 2, "val": 1}
    )
    with pytest.raises(ValueError, match=r"contains \['Am'\], which the initial model"):
        prepare(config, frames)


def test_adding_a_zbl_term_keeps_every_weight_and_adds_only_the_repulsion(
    dataset, foundation, tmp_path
):
    """``pair_potential`` is allowed with init: no new weights; beyond its r_max nothing changes."""
    pair = {"kind": "zbl", "r_max": 2.0}
    trainer = Trainer(
        config_for(dataset, tmp_path, {"model": str(foundation)}, model={"pair_potential": pair}),
        progress=False,
    )
    initial = load_model(foundation)
    assert initial.config.pair_potential is None
    assert trainer.model.config.pair_potential["r_max"] == 2.0
    assert trainer.model.config.replace(pair_potential=None) == initial.config
    for name, value in initial.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], value), name
    species = SpeciesMap(initial.type_names)
    frame = read_hdf5(dataset)[0]  # fcc Cu/Au cell (nn 2.6 Å, rattled): no pair within 2 Å
    energies = []
    for model in (initial, trainer.model):
        graph = join([frame_to_graph(frame, species, initial.r_max)])
        energies.append(predict(model.double(), graph, create_graph=False).energy.item())
    assert energies[1] == pytest.approx(energies[0], abs=1e-10)
    frame.positions[1] = frame.positions[0] + [0.0, 0.0, 1.2]  # a close pair: ZBL acts
    graph = join([frame_to_graph(frame, species, initial.r_max)])
    close = [predict(m, graph, create_graph=False).energy.item() for m in (initial, trainer.model)]
    assert close[1] - close[0] > 10.0
