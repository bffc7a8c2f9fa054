"""Held-out errors of a model: the numbers (and parity plot) of a model card.

Evaluate the test split of a training run and keep those frames, so anyone can re-check the card::

    python tools/evaluate_model.py pretrained/allegro-emt-metals/model.pt data/emt_metals.h5 \
        --split runs/allegro-emt-metals/split.json --subset test \
        --save-frames tests/data/heldout/allegro-emt-metals.h5 \
        --json pretrained/allegro-emt-metals/heldout_metrics.json \
        --plot pretrained/allegro-emt-metals/parity.png

Re-evaluate the committed frames (what ``tests/test_model_cards.py`` does)::

    python tools/evaluate_model.py pretrained/allegro-emt-metals/model.pt \
        tests/data/heldout/allegro-emt-metals.h5

``--group REGEX`` adds a table of errors per group of frames, e.g. ``--group '^[a-z]+'`` per family
(bulk, slab, ...) or ``--group '\\d+K'`` per MD temperature.
Errors are printed in meV/atom (energy), meV/Å (forces) and meV/Å³ (stress).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from allegro_ase.conversion import SpeciesMap
from allegro_ase.datasets import FrameWriter, read_attributes, read_frames
from allegro_ase.io import load_model
from allegro_ase.training import ErrorMetrics, evaluate, frame_to_graph

UNITS = {"energy_per_atom": "meV/atom", "forces": "meV/Å", "stress": "meV/Å³"}


def heldout_metrics(model_path: str | Path, frames: list) -> tuple[dict, ErrorMetrics]:
    """MAE/RMSE summary (meV units) and raw errors of a model, in its own dtype, on ``frames``."""
    model = load_model(model_path)
    species_map = SpeciesMap(model.config.type_names)
    graphs = [frame_to_graph(frame, species_map, model.config.r_max) for frame in frames]
    metrics = evaluate(model, graphs, batch_size=8)
    summary = {"num_frames": len(frames), "num_atoms": int(sum(len(f.numbers) for f in frames))}
    summary.update(metrics.summary())
    return summary, metrics


def group_table(model_path: str | Path, frames: list, pattern: str) -> str:
    """Markdown table of MAEs per group of frames: the first match of the regular expression
    ``pattern`` in a frame's ``config_type`` (the whole ``config_type`` where it does not match).

    E.g. ``^[a-z]+`` groups ``bulk_Cu_300K`` by family, ``\\d+K`` by MD temperature.
    """
    groups: dict[str, list] = {}
    for frame in frames:
        match = re.search(pattern, frame.config_type)
        groups.setdefault(match.group(0) if match else frame.config_type, []).append(frame)
    summaries = {name: heldout_metrics(model_path, group)[0] for name, group in groups.items()}
    quantities = [name for name in UNITS if any(f"{name}_mae" in s for s in summaries.values())]
    header = " | ".join(f"{q.replace('_', ' ')} MAE ({UNITS[q]})" for q in quantities)
    lines = [f"| frames | count | {header} |", "|---|---|" + "---|" * len(quantities)]
    for name, summary in sorted(summaries.items(), key=lambda item: _natural(item[0])):
        cells = [f"{summary[f'{q}_mae']:.2f}" if f"{q}_mae" in summary else "-" for q in quantities]
        lines.append(f"| {name} | {summary['num_frames']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _natural(text: str) -> list:
    """Sort key that orders "md_300K" before "md_1000K"."""
    return [int(token) if token.isdigit() else token for token in re.split(r"(\d+)", text)]


def parity_plot(metrics: ErrorMetrics, path: Path, title: str) -> None:
    """One panel per labelled quantity: predicted against reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name in UNITS if metrics.arrays(name)[0].size]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.0))
    for ax, name in zip(axes if len(names) > 1 else [axes], names, strict=True):
        reference, predicted = metrics.arrays(name)
        lo, hi = min(reference.min(), predicted.min()), max(reference.max(), predicted.max())
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
        ax.scatter(reference, predicted, s=2, alpha=0.4, rasterized=True)
        unit = UNITS[name].replace("meV", "eV")
        ax.set(xlabel=f"reference ({unit})", ylabel=f"model ({unit})", title=name.replace("_", " "))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _provenance(paths: list[str]) -> tuple[str, dict | None]:
    """Method and metadata of the evaluated frames: those of the (first) HDF5 source, with the
    metadata of every source kept when there are several."""
    attributes = [read_attributes(path) for path in paths if path.endswith((".h5", ".hdf5"))]
    if not attributes:
        return "unknown", None
    if len(attributes) == 1:
        return attributes[0]["method"], attributes[0].get("metadata")
    metadata = {"sources": [a.get("metadata") for a in attributes]}
    return attributes[0]["method"], metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="model checkpoint (.pt)")
    parser.add_argument(
        "dataset",
        nargs="+",
        help="HDF5 datasets (our schema) or labelled extxyz, in the order of the training config",
    )
    parser.add_argument("--split", help="split.json of the training run")
    parser.add_argument("--subset", default="test", help="which part of --split (default test)")
    parser.add_argument("--save-frames", help="write the evaluated frames to this HDF5 file")
    parser.add_argument("--json", help="write the summary here")
    parser.add_argument("--plot", help="write a parity plot (PNG) here")
    parser.add_argument(
        "--group",
        metavar="REGEX",
        help="also print MAEs per group of config_type: '^[a-z]+' (family), '\\d+K' (temperature)",
    )
    args = parser.parse_args(argv)

    frames = [frame for path in args.dataset for frame in read_frames(path)]
    if args.split:
        split = json.loads(Path(args.split).read_text())
        if split["num_frames"] != len(frames):
            sys.exit(f"{args.split} was made for {split['num_frames']} frames, not {len(frames)}.")
        frames = [frames[i] for i in split[args.subset]]
    summary, metrics = heldout_metrics(args.model, frames)
    for name, unit in UNITS.items():
        if f"{name}_mae" in summary:
            print(
                f"{name:16s} MAE {summary[f'{name}_mae']:8.3f}  RMSE {summary[f'{name}_rmse']:8.3f}  {unit}"
            )
    print(f"{summary['num_frames']} frames, {summary['num_atoms']} atoms")
    if args.group:
        print(group_table(args.model, frames, args.group))
    if args.save_frames:
        with FrameWriter(args.save_frames, *_provenance(args.dataset)) as writer:
            writer.append(frames)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    if args.plot:
        parity_plot(metrics, Path(args.plot), Path(args.model).parent.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
