"""Before training: read and split the frames, build their graphs, and fix the model config.

From scratch, statistics of the training split fill the model's ``type_names``,
``avg_num_neighbors``, ``per_type_energy_shifts`` and ``per_type_energy_scales``. A fine-tuning
run (``init``) takes the initial model's config instead (:mod:`.initial_model`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase.data import chemical_symbols

from ..conversion import SpeciesMap
from ..datasets import Frame, read_frames
from .config import TrainConfig
from .data import LabelledGraph, frame_to_graph, split_indices
from .initial_model import (
    architecture_name,
    check_elements,
    fine_tuning_config,
    load_initial_model,
    refit_shifts,
)
from .statistics import avg_num_neighbors, force_rms, per_type_energy_shifts


@dataclass
class PreparedData:
    """Graphs of each split, the split itself and the model derived from the data.

    ``model_config`` is the config of ``architecture`` (None: the training config's); a
    fine-tuning run (``init``) also holds the ``initial_model`` whose weights the trained model
    starts from.
    """

    splits: dict[str, list[int]]
    graphs: dict[str, list[LabelledGraph]]
    model_config: dict
    architecture: str | None = None
    initial_model: torch.nn.Module | None = None


def read_and_split(
    config: TrainConfig, frames: Sequence[Frame] | None = None
) -> tuple[list[Frame], dict[str, list[int]]]:
    """Read ``config.datasets`` (unless ``frames`` are given) and draw the train/val/test indices.

    With ``split.by`` ``task`` or ``config_type`` whole groups of frames are drawn; the label
    of a frame read from the k-th dataset file is prefixed by k, so files never share a group.
    """
    if frames is None:
        per_file = [read_frames(path) for path in config.datasets]
        sources = config.datasets
    else:
        per_file, sources = [list(frames)], ["the given frames"]
    frames = [frame for chunk in per_file for frame in chunk]
    groups = None
    if config.split.by != "frame":
        groups = []
        for k, (chunk, source) in enumerate(zip(per_file, sources, strict=True)):
            labels = [getattr(frame, config.split.by) for frame in chunk]
            missing = sum(not label for label in labels)
            if missing:
                raise ValueError(
                    f"split.by is {config.split.by!r}, but {missing} of the {len(chunk)} frames "
                    f"of {source} have no {config.split.by} label (HDF5 files written before "
                    "frames stored their task, or extxyz frames without info['task']): "
                    "regenerate the dataset, or choose another split.by."
                )
            groups += [f"{k}:{label}" for label in labels]
    split = config.split
    return frames, split_indices(len(frames), split.train, split.val, config.seed, groups)


def prepare(config: TrainConfig, frames: Sequence[Frame] | None = None) -> PreparedData:
    """Read the dataset, split it by seed, build graphs and fill the model's data statistics.

    With ``config.init`` the model config is the initial model's (see
    :mod:`allegro_ase.training.initial_model`): no statistics are computed except, with
    ``init.fit_shifts``, the per-type energy shifts of the elements in the training split.
    """
    frames, splits = read_and_split(config, frames)
    numbers = np.unique(np.concatenate([frame.numbers for frame in frames]))
    initial = None
    if config.init is None:
        architecture = config.architecture
        model_config = {"seed": config.seed, **config.model}
        model_config.setdefault("type_names", [chemical_symbols[z] for z in numbers])
    else:
        initial = load_initial_model(config.init.model)
        architecture = architecture_name(initial, config.architecture)
        model_config = fine_tuning_config(initial, config.model, config.init.fit_shifts)
        check_elements(numbers, model_config["type_names"], config.init.model)
    species_map = SpeciesMap(model_config["type_names"])
    r_max = float(model_config["r_max"])
    graphs = {
        name: [frame_to_graph(frames[i], species_map, r_max) for i in indices]
        for name, indices in splits.items()
    }
    train = graphs["train"]
    if initial is None:
        model_config.setdefault("avg_num_neighbors", avg_num_neighbors(train))
        model_config.setdefault(
            "per_type_energy_shifts", per_type_energy_shifts(train, model_config["type_names"])
        )
        model_config.setdefault("per_type_energy_scales", force_rms(train))
    elif config.init.fit_shifts:
        model_config["per_type_energy_shifts"] = refit_shifts(
            initial, train, model_config["per_type_energy_shifts"]
        )
    return PreparedData(splits, graphs, model_config, architecture, initial)
