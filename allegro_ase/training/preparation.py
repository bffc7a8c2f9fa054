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


def prepare(config: TrainConfig, frames: Sequence[Frame] | None = None) -> PreparedData:
    """Read the dataset, split it by seed, build graphs and fill the model's data statistics.

    With ``config.init`` the model config is the initial model's (see
    :mod:`allegro_ase.training.initial_model`): no statistics are computed except, with
    ``init.fit_shifts``, the per-type energy shifts of the elements in the training split.
    """
    if frames is None:
        frames = [frame for path in config.datasets for frame in read_frames(path)]
    splits = split_indices(len(frames), config.split.train, config.split.val, config.seed)
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
