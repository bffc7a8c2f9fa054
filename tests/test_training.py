"""Training: data statistics, batched predictions, reproducibility and resume."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import yaml
from conftest import GEOMETRIES, emt_frames, make_model

from allegro_ase.conversion import SpeciesMap, atoms_to_graph
from allegro_ase.datasets import Frame, FrameWriter, write_extxyz
from allegro_ase.io import load_model
from allegro_ase.outputs import compute_outputs
from allegro_ase.training import (
    TrainConfig,
    Trainer,
    frame_to_graph,
    join,
    predict,
    prepare,
    read_and_split,
)
from allegro_ase.training.data import split_indices
from allegro_ase.training.statistics import avg_num_neighbors, force_rms, per_type_energy_shifts

MODEL = dict(
    r_max=4.0,
    l_max=1,
    num_layers=1,
    num_scalar_features=8,
    num_tensor_features=2,
    num_bessels=4,
    scalar_embed_mlp_hidden_layers_width=8,
    allegro_mlp_hidden_layers_width=8,
    readout_mlp_hidden_layers_width=4,
)
NEQUIP_MODEL = dict(
    r_max=4.0, l_max=1, num_layers=3, num_features=8, radial_mlp_width=8, num_bessels=4
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "emt.h5"
    with FrameWriter(path, "EMT") as writer:
        writer.append(emt_frames(24))
    return path


def config_for(dataset, out, **changes) -> TrainConfig:
    values = dict(
        dataset=dataset if isinstance(dataset, list) else str(dataset),
        output_dir=str(out),
        seed=3,
        split={"train": 16, "val": 4},
        model=MODEL,
        loss={"energy_per_atom": 1.0, "forces": 1.0, "stress": 1.0},
        batch_size=4,
        max_epochs=3,
        device="cpu",
    )
    values.update(changes)
    return TrainConfig.from_dict(values)


def test_split_is_disjoint_complete_and_seeded():
    split = split_indices(50, 0.6, 10, seed=5)
    assert [len(split[k]) for k in ("train", "val", "test")] == [30, 10, 10]
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(50))
    assert split == split_indices(50, 0.6, 10, seed=5)
    assert split != split_indices(50, 0.6, 10, seed=6)
    with pytest.raises(ValueError, match="does not fit"):
        split_indices(10, 8, 5, seed=0)


def trajectories(sizes: list[int]) -> list[str]:
    """One task label per frame: trajectory k holds sizes[k] frames."""
    return [f"md_chunk{k:02d}" for k, size in enumerate(sizes) for _ in range(size)]


def test_split_by_trajectory_keeps_each_trajectory_in_one_part():
    groups = trajectories([60, 75, 90, 66, 80, 70, 85, 62, 77, 88, 64, 71, 83, 69, 79, 74, 68, 81])
    n = len(groups)
    split = split_indices(n, 0.7, 0.1, seed=3, groups=groups)
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(n))
    parts = {name: {groups[i] for i in indices} for name, indices in split.items()}
    assert not parts["train"] & parts["val"] and not parts["train"] & parts["test"]
    assert not parts["val"] & parts["test"]
    for name, fraction in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        assert abs(len(split[name]) - fraction * n) <= 90 / 2 + 1  # within half the largest group
    assert split == split_indices(n, 0.7, 0.1, seed=3, groups=groups)
    assert split != split_indices(n, 0.7, 0.1, seed=4, groups=groups)


def test_split_by_trajectory_needs_a_group_per_part():
    with pytest.raises(ValueError, match="needs at least 3 groups .* hold 2"):
        split_indices(20, 0.5, 0.2, seed=0, groups=trajectories([10, 10]))
    split = split_indices(20, 0.5, 0.5, seed=0, groups=trajectories([10, 10]))  # no test part
    assert len(split["train"]) == 10 and len(split["val"]) == 10 and not split["test"]


def test_split_by_task_reads_the_frame_labels_and_files_never_share_a_group(tmp_path):
    frames = emt_frames(12)
    for k, frame in enumerate(frames):
        frame.task = f"chunk{k // 2}"  # six trajectories of two frames
    paths = [tmp_path / "a.h5", tmp_path / "b.h5"]
    for path, part in zip(paths, (frames[:6], frames[6:]), strict=True):
        with FrameWriter(path, "EMT") as writer:
            writer.append(part)
    config = config_for(
        [str(p) for p in paths], tmp_path / "run", split={"train": 0.5, "val": 0.2, "by": "task"}
    )
    read, split = read_and_split(config)
    assert len(read) == 12
    for indices in split.values():
        assert all(set(indices) >= {2 * (i // 2), 2 * (i // 2) + 1} for i in indices)
    frames[5].task = ""
    with pytest.raises(ValueError, match="1 of the 12 frames of the given frames have no task"):
        read_and_split(config, frames)
    with pytest.raises(ValueError, match="split.by must be one of frame, task, config_type"):
        config_for(paths[0], tmp_path / "run", split={"by": "trajectory"})


def test_least_squares_shifts_recover_per_type_energies():
    frames = emt_frames(6)
    true = {"Cu": -3.25, "Au": -4.5}
    for frame in frames:
        frame.energy = sum(true["Cu" if z == 29 else "Au"] for z in frame.numbers)
    graphs = [frame_to_graph(f, SpeciesMap(["Cu", "Au"]), 4.0) for f in frames]
    shifts = per_type_energy_shifts(graphs, ["Cu", "Au"])
    assert shifts == pytest.approx(true, abs=1e-10)


def test_force_rms_and_neighbour_count():
    frames = emt_frames(3)
    graphs = [frame_to_graph(f, SpeciesMap(["Cu", "Au"]), 4.0) for f in frames]
    all_forces = np.concatenate([f.forces for f in frames])
    assert force_rms(graphs) == pytest.approx(np.sqrt((all_forces**2).mean()))
    from ase.neighborlist import neighbor_list

    pairs = sum(len(neighbor_list("i", f.to_atoms(), 4.0)) for f in frames)
    assert avg_num_neighbors(graphs) == pytest.approx(pairs / sum(len(f.numbers) for f in frames))


def test_batched_prediction_equals_single_structure_outputs():
    model = make_model(l_max=1)
    species_map = SpeciesMap(["Cu", "Au", "H"])
    structures = [GEOMETRIES[name]() for name in ("alloy", "triclinic", "slab", "cluster")]
    frames = []
    for atoms in structures:
        frames.append(
            Frame(
                atoms.numbers,
                atoms.positions,
                atoms.cell.array,
                atoms.pbc,
                0.0,
                np.zeros((len(atoms), 3)),
                np.zeros((3, 3)),
            )
        )
    batch = join([frame_to_graph(f, species_map, model.config.r_max) for f in frames])
    prediction = predict(model, batch, create_graph=False)
    start = 0
    for k, atoms in enumerate(structures):
        single = compute_outputs(model, atoms_to_graph(atoms, species_map, model.config.r_max))
        n = len(atoms)
        torch.testing.assert_close(prediction.energy[k], single.energy, rtol=0, atol=1e-10)
        torch.testing.assert_close(
            prediction.forces[start : start + n], single.forces, rtol=0, atol=1e-10
        )
        torch.testing.assert_close(prediction.virial[k], single.virial, rtol=0, atol=1e-10)
        start += n


def test_prepare_fills_model_statistics(dataset, tmp_path):
    data = prepare(config_for(dataset, tmp_path))
    config = data.model_config
    assert config["type_names"] == ["Cu", "Au"]  # ordered by atomic number
    assert set(config["per_type_energy_shifts"]) == {"Cu", "Au"}
    assert config["avg_num_neighbors"] > 10
    assert config["per_type_energy_scales"] == pytest.approx(force_rms(data.graphs["train"]))
    assert [len(data.graphs[k]) for k in ("train", "val", "test")] == [16, 4, 4]


def test_training_lowers_validation_error_and_writes_its_files(dataset, tmp_path):
    config = config_for(dataset, tmp_path, max_epochs=12, optimizer={"lr": 0.01})
    summary = Trainer(config, progress=False).fit()
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    first, last = (dict(zip(header, row.split(","), strict=False)) for row in (rows[1], rows[-1]))
    assert float(last["val_forces_mae"]) < 0.7 * float(first["val_forces_mae"])
    assert len(rows) == 13
    assert json.loads((tmp_path / "metrics.json").read_text()) == summary
    split = json.loads((tmp_path / "split.json").read_text())
    assert split["num_frames"] == 24 and len(split["test"]) == 4
    assert set(summary["test"]) >= {"energy_per_atom_mae", "forces_rmse", "stress_mae"}
    assert (tmp_path / "model.pt").exists()


def test_plateau_threshold_makes_small_improvements_count_as_flat(dataset, tmp_path):
    rates = {}
    for threshold in (1e-4, 0.9):
        schedule = {"name": "plateau", "patience": 0, "threshold": threshold}
        config = config_for(
            dataset, tmp_path / str(threshold), optimizer={"lr": 0.01}, schedule=schedule
        )
        Trainer(config, progress=False).fit()
        rows = (tmp_path / str(threshold) / "metrics.csv").read_text().splitlines()[1:]
        rates[threshold] = [float(row.split(",")[1]) for row in rows]
    assert rates[1e-4] == [0.01, 0.01, 0.01]  # the loss fell by more than 0.01 % each epoch
    assert rates[0.9] == [0.01, 0.01, 0.005]  # ... but not by 90 %: halved after epoch 2


def test_a_nequip_run_saves_a_model_that_loads_and_predicts_as_trained(dataset, tmp_path):
    config = config_for(dataset, tmp_path, architecture="nequip", model=NEQUIP_MODEL, max_epochs=1)
    trainer = Trainer(config, progress=False)
    trainer.fit()
    # the EMA of the best (here the only) epoch; both frozen, so both take the same path (the
    # chunked inference of NequIP's tensor products differs from one pass by rounding)
    saved = load_model(tmp_path / "model.pt").requires_grad_(False)
    batch = join(trainer.data.graphs["test"])
    trained = copy.deepcopy(trainer.ema).requires_grad_(False)
    expected, got = predict(trained, batch, False), predict(saved, batch, False)
    for name in ("energy", "forces", "virial"):
        assert torch.equal(getattr(got, name), getattr(expected, name)), name


def test_same_config_and_seed_give_the_same_model(dataset, tmp_path):
    states = []
    for name in ("a", "b"):
        Trainer(config_for(dataset, tmp_path / name), progress=False).fit()
        states.append(torch.load(tmp_path / name / "trainer_state.pt", weights_only=True)["ema"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_resumed_run_matches_an_uninterrupted_one(dataset, tmp_path):
    Trainer(config_for(dataset, tmp_path / "whole", max_epochs=3), progress=False).fit()
    Trainer(config_for(dataset, tmp_path / "cut", max_epochs=2), progress=False).fit()
    Trainer(config_for(dataset, tmp_path / "cut", max_epochs=3), progress=False).fit()
    whole, cut = (
        torch.load(tmp_path / name / "trainer_state.pt", weights_only=True)
        for name in ("whole", "cut")
    )
    for key in ("model", "ema", "optimizer"):
        flat = lambda d: torch.cat([v.reshape(-1).double() for v in _tensors(d)])  # noqa: E731
        assert torch.equal(flat(whole[key]), flat(cut[key])), key
    assert len((tmp_path / "cut" / "metrics.csv").read_text().splitlines()) == 4


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for key in sorted(tree, key=str):
            yield from _tensors(tree[key])
    elif isinstance(tree, list | tuple):
        for item in tree:
            yield from _tensors(item)


def test_output_dir_of_another_run_is_refused(dataset, tmp_path):
    Trainer(config_for(dataset, tmp_path, max_epochs=1), progress=False).fit()
    other = config_for(dataset, tmp_path, max_epochs=1, seed=4)
    with pytest.raises(RuntimeError, match="different"):
        Trainer(other, progress=False).fit()


def test_run_written_before_a_new_setting_existed_still_resumes(dataset, tmp_path):
    """config.yaml of an older version lacks schedule.threshold; its default changes nothing."""
    Trainer(config_for(dataset, tmp_path, max_epochs=1), progress=False).fit()
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del saved["schedule"]["threshold"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    Trainer(config_for(dataset, tmp_path, max_epochs=2), progress=False).fit()
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 3


def test_extxyz_dataset_trains_like_hdf5(dataset, tmp_path):
    from allegro_ase.datasets import read_hdf5

    xyz = tmp_path / "emt.extxyz"
    write_extxyz(read_hdf5(dataset), xyz)
    from_h5 = prepare(config_for(dataset, tmp_path / "h5"))
    from_xyz = prepare(config_for(xyz, tmp_path / "xyz"))
    h5_config, xyz_config = from_h5.model_config, from_xyz.model_config
    for key, value in h5_config.items():
        assert xyz_config[key] == (
            pytest.approx(value, rel=1e-9) if isinstance(value, float) else value
        )
    assert from_h5.splits == from_xyz.splits


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"learning_rate": 1.0}, "Unknown keys in training config"),
        ({"loss": {"energy": 1.0}}, "Unknown keys in loss"),
        ({"optimizer": {"name": "sgd"}}, "adam or adamw"),
        ({"model": {"l_max": 1}}, "r_max"),
    ],
)
def test_bad_configs_are_refused_with_their_key(tmp_path, changes, message):
    values = dict(dataset="x.h5", output_dir=str(tmp_path), model={"r_max": 4.0})
    values.update(changes)
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(values)


def test_train_command_line_trains_and_resumes(dataset, tmp_path, capsys):
    import yaml

    from allegro_ase.cli import main

    config = config_for(dataset, tmp_path / "run", max_epochs=2).to_dict()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--no-progress"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["epochs_run"] == 2 and set(first) >= {"val", "test", "best_epoch"}
    assert main(["train", str(path), "--no-progress"]) == 0  # a finished run is left alone
    assert json.loads(capsys.readouterr().out)["epochs_run"] == 2


def test_several_datasets_are_concatenated_before_the_split(dataset, tmp_path):
    from allegro_ase.datasets import read_hdf5

    frames = read_hdf5(dataset)
    first, second = tmp_path / "a.h5", tmp_path / "b.h5"
    for path, part in ((first, frames[:10]), (second, frames[10:])):
        with FrameWriter(path, "EMT") as writer:
            writer.append(part)
    joined = prepare(config_for([str(first), str(second)], tmp_path / "joined"))
    whole = prepare(config_for(dataset, tmp_path / "whole"))
    assert joined.splits == whole.splits
    assert joined.model_config == whole.model_config
