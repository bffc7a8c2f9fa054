"""The training configuration: one YAML file, validated into typed sections.

Example (every key is optional except ``dataset``, ``output_dir`` and ``model.r_max``; with
``init``, fine-tuning below, ``model.r_max`` is not needed either)::

    dataset: data/emt_metals.h5        # our HDF5 schema or any labelled file ASE reads; or a list
    output_dir: runs/emt
    seed: 1
    split: {train: 2000, val: 200}     # counts or fractions; the rest is the test set
                                       # (add by: task to keep each MD trajectory in one part)
    architecture: allegro              # or nequip
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

Splitting by trajectory: frames of one MD trajectory are strongly correlated, so test frames
drawn at random from the trajectories the model trained on measure interpolation, not the error
on new trajectories. ``split.by`` draws whole groups of frames instead::

    split: {train: 0.7, val: 0.1, by: task}

``split.by`` (default ``frame``)
    ``frame``: frames at random. ``task``: whole generator tasks, the label each frame of our
    HDF5 files stores (``Frame.task``: one MD trajectory or chunk of the data generators;
    ``info["task"]`` in extxyz). ``config_type``: whole config types. The groups are shuffled by
    ``seed`` and cut where the frame count comes closest to the train and val sizes (so the sizes
    hold to about one group); labels from different dataset files never share a group. Every
    frame needs a label, and each part needs at least one group.

Fine-tuning: an ``init`` section starts from a trained model's weights instead of random ones::

    dataset: my_dft_frames.extxyz
    output_dir: runs/finetune
    init: {model: nequip.net:mir-group/NequIP-OAM-L:0.1, fit_shifts: true, freeze: [layers.0]}
    model: {model_dtype: float64}      # optional; the architecture comes from init.model
    optimizer: {lr: 0.0002}            # fine-tuning wants a lower rate: 1e-4 to 5e-4

``init.model`` (required)
    The initial model: a zoo name (``allegro-ase models list``), a model file of this package
    (``.pt``), a reference-framework file (``.ckpt`` or ``.nequip.zip``) or a nequip.net id
    (``nequip.net:group/name:version``). Its architecture, type names (a foundation model keeps
    all 89), cutoff, ``avg_num_neighbors`` and energy scales are kept; the data's elements must
    be among its type names.
``init.fit_shifts`` (default false)
    Refit the per-type energy shifts to the training split: each element present in the data
    gets the least-squares correction of the energy residuals (reference - initial model), so
    the initial network plus the new shifts best matches the training energies; the other
    elements keep their shifts. Use it when the data's reference energies differ from the
    initial model's (another DFT code, functional or pseudopotential).
``init.freeze`` (default none)
    Parameters not to train: each entry is a parameter-name prefix at a dot (``layers.0``
    freezes ``layers.0.conv.linear_1.weight``) or a regular expression matching whole names
    (``.*edge_mlp.*``). Frozen parameters keep their initial values exactly (the
    optimiser and the EMA leave them alone). An entry that matches nothing is an error.

With ``init`` the ``model`` section may hold only settings that keep the pretrained function:
``model_dtype``, ``per_type_energy_shifts`` (a value for all types, or a mapping for some;
not together with ``fit_shifts``) and ``per_type_energy_shifts_trainable`` /
``per_type_energy_scales_trainable``, and ``pair_potential``, which adds no weights (e.g.
``{kind: zbl, r_max: 2.0}``: ZBL repulsion at close contact, which the network then learns
around); any other key must equal the initial model's value.
``architecture`` may be left out (it is the initial model's). Trainable energy scales of
the initial model keep training unless frozen (``freeze: [scale_shift]``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SPLIT_BY = ("frame", "task", "config_type")


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """Sizes of the train and validation sets (counts, or fractions of all frames).

    ``by`` says whether frames (``frame``) or whole groups of frames (``task``, one MD trajectory
    each, or ``config_type``) are drawn; see the module docstring.
    """

    train: float = 0.8
    val: float = 0.1
    by: str = "frame"

    def __post_init__(self):
        if self.by not in SPLIT_BY:
            raise ValueError(
                f"split.by must be one of {', '.join(SPLIT_BY)}, got {self.by!r}; 'task' keeps "
                "each generator task (an MD trajectory) in one part."
            )


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


@dataclass(frozen=True, kw_only=True)
class InitConfig:
    """The initial model of a fine-tuning run; see the module docstring for each key."""

    model: str
    fit_shifts: bool = False
    freeze: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(
                f"init.model must name the initial model (a zoo name, a .pt, .ckpt or "
                f".nequip.zip file, or a nequip.net id), got {self.model!r}."
            )
        if not isinstance(self.fit_shifts, bool):
            raise ValueError(f"init.fit_shifts must be true or false, got {self.fit_shifts!r}.")
        freeze = [self.freeze] if isinstance(self.freeze, str) else list(self.freeze or ())
        for pattern in freeze:
            if not isinstance(pattern, str) or not pattern:
                raise ValueError(f"init.freeze entries must be non-empty strings, got {pattern!r}.")
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(
                    f"init.freeze entry {pattern!r} is not a valid regular expression: {error}."
                ) from error
        object.__setattr__(self, "freeze", tuple(freeze))


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
    architecture: str | None = None
    init: InitConfig | None = None
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
        if self.init is None and "r_max" not in self.model:
            raise ValueError("The model section must set r_max (Å).")
        if self.init is None and self.architecture is None:
            object.__setattr__(self, "architecture", "allegro")
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
        if values.get("init") is not None:
            values["init"] = _init_section(values["init"], base_dir)
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
        values = dataclasses.asdict(self)
        if self.init is None:
            del values["init"]  # the config of a run from scratch reads as it always did
        else:
            values["init"]["freeze"] = list(self.init.freeze)
        return values


def _as_list(value: str | list[str]) -> list[str]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _init_section(given: Any, base_dir: Path | None) -> InitConfig:
    """Validate the ``init`` mapping; a relative model file is taken relative to ``base_dir``."""
    if not isinstance(given, Mapping):
        raise ValueError(
            f"init must be a mapping such as {{model: my_model.pt, fit_shifts: true}}, got {given!r}."
        )
    _reject_unknown("init", given, {f.name for f in dataclasses.fields(InitConfig)})
    if "model" not in given:
        raise ValueError("The init section must set model (the initial model to fine-tune).")
    given = dict(given)
    source = given["model"]
    if base_dir is not None and isinstance(source, str) and _looks_like_file(source):
        given["model"] = str(base_dir / source)
    return InitConfig(**given)


def _looks_like_file(source: str) -> bool:
    """Whether an ``init.model`` value names a model file (not a zoo name or nequip.net id)."""
    suffixes = (".pt", ".ckpt", ".nequip.zip", ".nequip.pth", ".nequip.pt2")
    return not source.startswith("nequip.net:") and source.endswith(suffixes)


def _reject_unknown(where: str, values: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown keys in {where}: {unknown}; valid keys are {sorted(known)}.")
