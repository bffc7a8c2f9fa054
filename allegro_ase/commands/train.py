"""``allegro-ase train CONFIG``: train (or resume) a model from a YAML config."""

from __future__ import annotations

import argparse
import json

from .common import add_output_flags


def add_train(commands: argparse._SubParsersAction) -> None:
    """Add ``train CONFIG`` to the subcommands."""
    train = commands.add_parser(
        "train", help="train a model from a YAML config (resumes an interrupted run)"
    )
    train.add_argument("config", help="training config (see allegro_ase.training.config)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar or epoch log")
    add_output_flags(train)
    train.set_defaults(run=train_command)


def train_command(args: argparse.Namespace) -> int:
    """Train (or resume) the run of ``args.config`` and print the held-out summary."""
    from ..training import TrainConfig, train

    config = TrainConfig.from_file(args.config)
    summary = train(config, progress=not (args.no_progress or args.quiet))
    print(json.dumps(summary, indent=2))
    return 0
