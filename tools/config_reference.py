"""Render docs/config_reference.md: every key of the training config, with default and meaning.

    python tools/config_reference.py            # print the page
    python tools/config_reference.py --write    # rewrite docs/config_reference.md

Keys, types and defaults are read from the config dataclasses (``TrainConfig`` and its
sections, ``AllegroConfig``, ``NequIPConfig``); the meanings of the model keys from those
classes' numpy ``Attributes`` docstrings; the meanings of the training keys from ``TRAINING``
below. ``tests/test_docs.py`` checks that the committed page equals this script's output and
that every field has a meaning, so a new, renamed or re-defaulted key fails the tests until the
page is rendered again.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import sys
from pathlib import Path
from typing import Any

from allegro_ase.models import AllegroConfig, NequIPConfig
from allegro_ase.training import config as training_config

PAGE = Path(__file__).resolve().parents[1] / "docs" / "config_reference.md"

# Meanings of the training config's own keys, ``section.key`` for the keys of a section.
TRAINING = {
    "dataset": "The labelled frames: a file in allegro-ase's HDF5 schema (`allegro_ase.datasets`) "
    "or any file ASE reads with energies and forces (extxyz), or a list of such files, "
    "concatenated in order before the split.",
    "output_dir": "Folder of the run: `config.yaml`, `split.json`, `model.pt` (best EMA weights), "
    "`trainer_state.pt`, `metrics.csv`, `metrics.json`. Running the same config again resumes.",
    "model": "The model's hyperparameters: the keys of the Allegro or NequIP table below. "
    "`r_max` is required unless `init` is set.",
    "architecture": "`allegro` or `nequip`; null means `allegro`, or with `init` the initial "
    "model's architecture.",
    "init": "Fine-tuning: start from a trained model's weights (the `init.*` keys below); null "
    "trains from random weights.",
    "seed": "Seeds the split, the shuffling of the training frames and the initial weights "
    "(unless `model.seed` is set).",
    "split": "Sizes of the training and validation sets (`split.*` below); the other frames are "
    "the held-out test set.",
    "loss": "Weights of the loss terms (`loss.*` below).",
    "optimizer": "The optimiser (`optimizer.*` below).",
    "schedule": "The learning-rate schedule (`schedule.*` below).",
    "early_stopping": "When to stop before `max_epochs` (`early_stopping.*` below).",
    "batch_size": "Frames per optimiser step.",
    "max_epochs": "Upper limit on passes over the training set.",
    "ema_decay": "Decay of the exponential moving average of the weights, in [0, 1), warmed up "
    "as min(decay, (1 + n) / (10 + n)) at step n; the EMA weights are validated and saved.",
    "grad_clip_norm": "Clip the gradient's total norm to this value before each step; null (or "
    "0) does not clip.",
    "device": "`auto` (CUDA when present), `cpu`, `cuda` or `cuda:K`.",
    "split.train": "Training frames: a count when >= 1, else a fraction of all frames.",
    "split.val": "Validation frames: a count when >= 1, else a fraction of all frames.",
    "split.by": "What is drawn at random: `frame`, or whole groups of frames, `task` (the "
    "generator task each frame of our HDF5 files stores: one MD trajectory, so no trajectory is "
    "in two parts) or `config_type`. Groups are shuffled by `seed` and cut where the frame count "
    "comes closest to the train and val sizes; each part needs at least one group.",
    "loss.energy_per_atom": "Weight of the mean squared error of the energy per atom (eV²).",
    "loss.forces": "Weight of the mean squared error of the force components ((eV/Å)²).",
    "loss.stress": "Weight of the mean squared error of the stress components ((eV/Å³)²); "
    "frames without stress do not contribute.",
    "optimizer.name": "`adam` or `adamw`.",
    "optimizer.lr": "Initial learning rate (fine-tuning: 1e-4 to 5e-4).",
    "optimizer.weight_decay": "Weight decay (L2 for `adam`, decoupled for `adamw`).",
    "schedule.name": "`plateau` (lower the rate when the validation loss stops improving) or "
    "`cosine` (cosine decay from `lr` to `min_lr` over `max_epochs`).",
    "schedule.factor": "`plateau`: multiply the rate by this after `patience` flat epochs.",
    "schedule.patience": "`plateau`: flat epochs tolerated before the rate is lowered.",
    "schedule.threshold": "`plateau`: an epoch is flat unless its validation loss beats the best "
    "by this relative amount.",
    "schedule.min_lr": "Lowest learning rate the schedule goes to.",
    "early_stopping.patience": "Stop after this many epochs without a better validation loss.",
    "early_stopping.min_lr": "Stop once the learning rate falls below this.",
    "init.model": "The initial model: a zoo name, a `.pt` file of this package, a reference "
    "`.ckpt` or `.nequip.zip`, or a `nequip.net:group/name:version` id. Its architecture, "
    "type names, cutoff, `avg_num_neighbors` and scales are kept.",
    "init.fit_shifts": "Refit the per-type energy shifts of the data's elements by least squares "
    "on the residuals (reference − initial model); the other types keep theirs.",
    "init.freeze": "Parameters not to train: name prefixes at a dot (`layers.0`) or regular "
    "expressions matching whole names (`.*edge_mlp.*`); an entry matching nothing is an error.",
}

# Model keys that `allegro-ase train` fills from the training split when the model section
# leaves them out (allegro_ase/training/preparation.py).
FROM_DATA = {
    "type_names": "the elements in the data, by atomic number",
    "avg_num_neighbors": "mean neighbours per atom in the training split",
    "per_type_energy_shifts": "least-squares per-type energies of the training split",
    "per_type_energy_scales": "RMS of the training forces",
}

MODELS = {"allegro": AllegroConfig, "nequip": NequIPConfig}


def yaml_value(value: Any) -> str:
    """A default as it would be written in the YAML config."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {yaml_value(item)}" for key, item in value.items()) + "}"
    return str(value)


def default_of(field: dataclasses.Field) -> str | None:
    """The field's default in YAML spelling, or None if it has none (required)."""
    if field.default is not dataclasses.MISSING:
        return yaml_value(field.default)
    if field.default_factory is not dataclasses.MISSING:
        return yaml_value(field.default_factory())
    return None


def attribute_docs(cls: type) -> list[tuple[list[str], str]]:
    """(names, text) of each entry of a numpy-style ``Attributes`` docstring section.

    An entry is ``name[, name ...] [: type]`` at the section's indentation followed by indented
    text; names may hold ``*`` wildcards (``readout_mlp_*``).
    """
    lines = (cls.__doc__ or "").splitlines()
    start = next(k for k, line in enumerate(lines) if line.strip() == "Attributes") + 2
    indent = len(lines[start]) - len(lines[start].lstrip())
    entries: list[tuple[list[str], list[str]]] = []
    for line in lines[start:]:
        if not line.strip():
            continue
        if len(line) - len(line.lstrip()) == indent:
            names = line.strip().split(" : ")[0]
            entries.append(([name.strip() for name in names.split(",")], []))
        elif len(line) - len(line.lstrip()) > indent and entries:
            entries[-1][1].append(line.strip())
        else:
            break
    return [(names, markdown(" ".join(text))) for names, text in entries]


def markdown(text: str) -> str:
    """reStructuredText literals and roles of a docstring as Markdown code spans."""
    text = re.sub(r":\w+:`~?[\w.]*?(\w+)`", r"`\1`", text)
    return text.replace("``", "`")


def model_groups(cls: type) -> list[tuple[list[dataclasses.Field], str]]:
    """The fields of a model config class grouped by the docstring entry that explains them.

    Groups are in the order of their first field in the dataclass.

    Raises
    ------
    KeyError
        A field that no docstring entry names.
    """
    entries = attribute_docs(cls)
    groups: dict[int, tuple[list[dataclasses.Field], str]] = {}
    for field in dataclasses.fields(cls):
        for k, (names, text) in enumerate(entries):
            if any(fnmatch.fnmatchcase(field.name, name) for name in names):
                groups.setdefault(k, ([], text))[0].append(field)
                break
        else:
            raise KeyError(f"{cls.__name__}.{field.name} is not in its Attributes docstring")
    return list(groups.values())


def escape(text: str) -> str:
    """Table-cell text: pipes escaped."""
    return text.replace("|", "\\|")


def training_rows() -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) of every training key, sections after the top level."""
    sections = {"init": training_config.InitConfig, **training_config._SECTIONS}
    rows = []
    for field in dataclasses.fields(training_config.TrainConfig):
        if field.name in sections and field.name != "init":
            default = "(section)"
        elif field.name == "model":
            default = "required"  # a mapping; the keys are in the tables below
        else:
            default = default_of(field) or "required"
        rows.append((field.name, str(field.type), default, TRAINING[field.name]))
    for name, section in sections.items():
        for field in dataclasses.fields(section):
            key = f"{name}.{field.name}"
            rows.append((key, str(field.type), default_of(field) or "required", TRAINING[key]))
    return [
        (f"`{key}`", f"`{escape(kind)}`", escape(default), escape(meaning))
        for key, kind, default, meaning in rows
    ]


def model_rows(cls: type) -> list[tuple[str, str, str, str]]:
    """(keys, types, defaults, meaning) of a model config class, a row per docstring entry."""
    rows = []
    for fields, meaning in model_groups(cls):
        defaults = []
        for field in fields:
            default = default_of(field)
            if field.name in FROM_DATA:
                from_data = f"training: {FROM_DATA[field.name]}"
                default = f"{default or 'required'} in Python; {from_data}"
            defaults.append(default or "required")
        rows.append(
            (
                "<br>".join(f"`{field.name}`" for field in fields),
                "<br>".join(f"`{escape(str(field.type))}`" for field in fields),
                "<br>".join(escape(default) for default in defaults),
                escape(meaning),
            )
        )
    return rows


def table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    """A Markdown table of (key, type, default, meaning) rows, cells already formatted."""
    out = ["| key | type | default | meaning |", "|---|---|---|---|"]
    out += [f"| {key} | {kind} | {default} | {meaning} |" for key, kind, default, meaning in rows]
    return out


def render() -> str:
    """The whole page."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by tools/config_reference.py from the config dataclasses; do not edit by",
        "     hand. Render again with: python tools/config_reference.py --write -->",
        "",
        "Every key of a training config (`allegro-ase train CONFIG.yaml`) and of the `model`",
        "section, with its type, default and meaning. `docs/training.md` shows how they are used.",
        "Unknown keys are refused with the list of valid ones. The `model` keys are also the",
        "arguments of `AllegroConfig(...)` and `NequIPConfig(...)` in Python, where the keys",
        "marked *required* have no default.",
        "",
        "## Training config",
        "",
        "Sections are YAML mappings: `optimizer: {name: adamw, lr: 0.001}`; `split.train` below",
        "means the key `train` of the section `split`.",
        "",
        *table(training_rows()),
    ]
    for name, cls in MODELS.items():
        summary = (cls.__doc__ or "").strip().split("\n\n")[1]  # the paragraph after the title
        lines += [
            "",
            f"## `model` section, `architecture: {name}` (`{cls.__name__}`)",
            "",
            markdown(" ".join(line.strip() for line in summary.splitlines())),
            "",
            *table(model_rows(cls)),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        PAGE.write_text(render())
    else:
        sys.stdout.write(render())
