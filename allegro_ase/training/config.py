"""The training configuration: one YAML file, validated into typed sections.

Example (every key is optional except ``dataset``, ``output_dir`` and ``model.r_max``)::

    dataset: data/emt_metals.h5        # our HDF5 schema or any labelled file ASE reads; or a list
    output_dir: runs/emt
    seed: 1
    split: {train: 2000, val: 200}     # counts or fractions; the rest is the test set
    architecture: allegro
    model: {r_max: 5.0, l_max: 1, num_layers: 2, num_scalar_features: 32}
    loss: {energy_per_atom: 1.0, forces: 1.0, stress: 0.0}
    optimizer: {name: adam, lr: 0.002, weight_decay: 0.0}
    schedule: {name: plateau, factor: 0.5, patience: 10}
    batch_size: 4
    max_epochs: 500
    early_stopping: {patience: 40, min_lr: 1.0e-5}
    ema_decay: 0.99
    grad_clip_norm: 10.0
    device: auto

Statistics of the training split fill the model fields ``type_names`` (elements in the data,
ordered by atomic number), ``avg_num_neighbors``, ``per_type_energy_shifts`` (least squares)
and ``per_type_energy_scales`` (force RMS) unless the model section sets them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """Sizes of the train and validation sets (counts, or fractions of all frames)."""

    train: float = 0.8
    val: float = 0.1


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Weights of the mean squared errors of energy per atom (eV), forces (eV/Å), stress (eV/Å³)."""

    energy_per_atom: float = 1.0
    forces: float = 1.0
    stress: float = 0.0


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """``adam`` or ``adamw`` with learning rate and weight decay."""

    name: str = "adam"
    lr: float = 0.002
    weight_decay: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """``plateau`` (multiply the rate by ``factor`` after ``patience`` flat epochs) or ``cosine``.

    With ``plateau``, an epoch is flat unless its validation loss beats the best so far by the
    relative ``threshold``: a larger threshold lowers the rate while the loss still creeps down.
    """

    name: str = "plateau"
    factor: float = 0.5
    patience: int = 10
    threshold: float = 1e-4
    min_lr: float = 1e-6


@dataclass(frozen=True, kw_only=True)
class EarlyStoppingConfig:
    """Stop after ``patience`` epochs without a better validation loss, or below ``min_lr``."""

    patience: int = 50
    min_lr: float = 1e-5


_SECTIONS = {
    "split": SplitConfig,
    "loss": LossConfig,
    "optimizer": OptimizerConfig,
    "schedule": ScheduleConfig,
    "early_stopping": EarlyStoppingConfig,
}


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that defines a training run; see the module docstring for the file format."""

    dataset: str | list[str]
    output_dir: str
    model: dict[str, Any]
    architecture: str = "allegro"
    seed: int = 0
    split: SplitConfig = field(default_factory=SplitConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    batch_size: int = 4
    max_epochs: int = 500
    ema_decay: float = 0.99
    grad_clip_norm: float | None = 10.0
    device: str = "auto"

    def __post_init__(self):
        if "r_max" not in self.model:
            raise ValueError("The model section must set r_max (Å).")
        if self.optimizer.name not in {"adam", "adamw"}:
            raise ValueError(f"optimizer.name must be adam or adamw, got {self.optimizer.name!r}.")
        if self.schedule.name not in {"plateau", "cosine"}:
            raise ValueError(
                f"schedule.name must be plateau or cosine, got {self.schedule.name!r}."
            )
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}.")
        if self.batch_size < 1 or self.max_epochs < 1:
            raise ValueError("batch_size and max_epochs must be at least 1.")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base_dir: Path | None = None) -> TrainConfig:
        """Validate a dictionary; relative paths are taken relative to ``base_dir``."""
        values = dict(values)
        _reject_unknown("training config", values, {f.name for f in dataclasses.fields(cls)})
        for name, section in _SECTIONS.items():
            given = values.get(name, {})
            if not isinstance(given, Mapping):
                raise ValueError(f"{name} must be a mapping, got {given!r}.")
            _reject_unknown(name, given, {f.name for f in dataclasses.fields(section)})
            values[name] = section(**given)
        for key in ("dataset", "output_dir"):
            if key not in values:
                raise ValueError(f"The training config must set {key!r}.")
        if base_dir is not None:
            values["output_dir"] = str(base_dir / values["output_dir"])
            datasets = values["dataset"]
            joined = [str(base_dir / path) for path in _as_list(datasets)]
            values["dataset"] = joined if isinstance(datasets, list) else joined[0]
        values.setdefault("model", {})
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a YAML config; relative paths are relative to the working directory."""
        with open(path) as handle:
            values = yaml.safe_load(handle) or {}
        return cls.from_dict(values)

    @property
    def datasets(self) -> list[str]:
        """The dataset files, in order; their frames are concatenated before splitting."""
        return _as_list(self.dataset)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (YAML/JSON ready)."""
        return dataclasses.asdict(self)


def _as_list(value: str | list[str]) -> list[str]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _reject_unknown(where: str, values: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown keys in {where}: {unknown}; valid keys are {sorted(known)}.")
