#!/usr/bin/env python
"""Write the frames of some parts of a training run's split (train, val, test) to one HDF5 file.

A training config's ``seed`` and ``split`` draw the parts from all its dataset frames at once, so
appending frames to its dataset list redraws every part, and frames that were held out from a
trained model would land in the training set of its fine-tuning. Fine-tune on the frames this
script writes instead: with ``--parts train val`` only the frames the model already trained
and validated on, so its held-out test frames stay held out::

    python tools/write_split_frames.py pretrained/allegro-emt-metals/config.yaml \\
        --parts train val --out data/allegro-emt-metals-v2-trainval.h5 \\
        --check-excluded tests/data/heldout/allegro-emt-metals.h5

``--check-excluded H5`` checks that the parts left out are the frames of ``H5``, in order (same
atomic numbers; positions and energies within 1e-8 Å and eV, since regenerated data agree with
the stored held-out frames to ~1e-13, not bit for bit): a card's held-out file, made by
``tools/evaluate_model.py --save-frames``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from allegro_ase.datasets import FrameWriter, read_attributes, read_frames
from allegro_ase.training import TrainConfig, read_and_split

TOLERANCE = 1e-8  # Å and eV


def same_frame(a, b) -> bool:
    """Whether two frames have the same atoms, positions and energy (within TOLERANCE)."""
    return (
        np.array_equal(a.numbers, b.numbers)
        and np.allclose(a.positions, b.positions, rtol=0, atol=TOLERANCE)
        and abs(a.energy - b.energy) < TOLERANCE
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="the training config whose split is redrawn")
    parser.add_argument("--parts", nargs="+", choices=("train", "val", "test"), required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--check-excluded", default=None, metavar="H5")
    args = parser.parse_args(argv)
    config = TrainConfig.from_file(args.config)
    frames, splits = read_and_split(config)
    kept = sorted(i for part in args.parts for i in splits[part])
    if args.check_excluded:
        excluded = sorted(set(range(len(frames))) - set(kept))
        expected = read_frames(args.check_excluded)
        if len(expected) != len(excluded) or not all(
            same_frame(frames[i], frame) for i, frame in zip(excluded, expected, strict=True)
        ):
            print(f"the frames left out are not those of {args.check_excluded}", file=sys.stderr)
            return 1
        print(f"check: the {len(excluded)} frames left out are those of {args.check_excluded}")
    if Path(args.out).exists():
        print(f"{args.out} exists; delete it first", file=sys.stderr)
        return 1
    metadata = {
        "script": "tools/write_split_frames.py",
        "config": args.config,
        "datasets": config.datasets,
        "seed": config.seed,
        "split": {"train": config.split.train, "val": config.split.val, "by": config.split.by},
        "parts": args.parts,
    }
    method = read_attributes(config.datasets[0])["method"]  # an HDF5 dataset of ours
    with FrameWriter(args.out, method=method, metadata=metadata) as writer:
        writer.append([frames[i] for i in kept], task="split")
    print(f"{args.out}: {len(kept)} of {len(frames)} frames ({' + '.join(args.parts)})")
    print(json.dumps({part: len(splits[part]) for part in splits}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
