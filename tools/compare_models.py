"""Compare zoo models on the frames that every one of them held out from training.

Each shipped model keeps its held-out test frames in ``tests/data/heldout/<name>.h5``. Two models
trained on different splits (or on different data) are only compared fairly on frames neither saw,
so this script matches frames by content (species, positions, cell, pbc) across the held-out files
and evaluates every model on the common ones::

    python tools/compare_models.py pretrained/nequip-emt-metals/model.pt \
        pretrained/allegro-emt-metals/model.pt \
        --heldout tests/data/heldout/nequip-emt-metals.h5 tests/data/heldout/allegro-emt-metals.h5

It prints a Markdown table (MAE / RMSE in meV/atom, meV/Å, meV/Å³) ready for a model card.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from evaluate_model import UNITS, heldout_metrics

from allegro_ase.datasets import Frame, read_frames


def frame_key(frame: Frame) -> str:
    """A digest of what defines a structure (not its labels): equal frames, equal keys."""
    digest = hashlib.sha256()
    for array in (frame.numbers, frame.positions, frame.cell, frame.pbc):
        digest.update(array.tobytes())
    return digest.hexdigest()


def common_frames(frame_sets: list[list[Frame]]) -> list[Frame]:
    """Frames present in every set, in the order of the first."""
    shared = set.intersection(*({frame_key(f) for f in frames} for frames in frame_sets))
    return [frame for frame in frame_sets[0] if frame_key(frame) in shared]


def comparison_table(models: list[str], frames: list[Frame]) -> str:
    """Markdown table: one row per quantity, MAE and RMSE of each model."""
    summaries = [heldout_metrics(model, frames)[0] for model in models]
    names = [Path(model).parent.name for model in models]
    lines = [
        "| quantity | " + " | ".join(f"{name} MAE | {name} RMSE" for name in names) + " | unit |",
        "|---|" + "---|---|" * len(models) + "---|",
    ]
    for quantity, unit in UNITS.items():
        if f"{quantity}_mae" not in summaries[0]:
            continue
        cells = [f"{s[f'{quantity}_mae']:.2f} | {s[f'{quantity}_rmse']:.2f}" for s in summaries]
        lines.append(f"| {quantity.replace('_', ' ')} | " + " | ".join(cells) + f" | {unit} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="model checkpoints (.pt)")
    parser.add_argument(
        "--heldout", nargs="+", required=True, help="held-out frame files of the models compared"
    )
    args = parser.parse_args(argv)
    frames = common_frames([read_frames(path) for path in args.heldout])
    if not frames:
        sys.exit("The held-out files have no frame in common.")
    num_atoms = sum(len(frame.numbers) for frame in frames)
    print(f"{len(frames)} frames ({num_atoms} atoms) held out from every model\n")
    print(comparison_table(args.models, frames))
    return 0


if __name__ == "__main__":
    sys.exit(main())
