"""``allegro-ase eval MODEL FILE...``: predictions for labelled frames and their errors.

Every frame of every file (an ``allegro-ase-dataset`` HDF5 file or any file ASE reads) is
predicted; where a frame carries reference labels (energy, forces, stress), the errors are
summed into MAE and RMSE of the energy per atom (meV/atom), the force components (meV/Å) and
the nine components of the stress tensor (meV/Å³), the quantities of the model cards
(``tools/evaluate_model.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from collections.abc import Mapping

from .common import (
    CommandError,
    add_model_flags,
    load_calculator,
    progress_bar,
    read_frames,
    write_frames,
)

# quantity -> (unit of the table, factor from the eV-based value)
UNITS = {"energy_per_atom": ("meV/atom", 1e3), "forces": ("meV/Å", 1e3), "stress": ("meV/Å³", 1e3)}


def add_eval(commands: argparse._SubParsersAction) -> None:
    """Add ``eval MODEL FILE... [--out] [--plot]`` to the subcommands."""
    parser = commands.add_parser(
        "eval",
        help="predict labelled frames; MAE/RMSE of energy, forces and stress",
        description="Predict energy, forces and stress of every frame of FILEs; against the "
        "frames' own labels, print MAE and RMSE of the energy per atom (meV/atom), forces "
        "(meV/Å) and stress (meV/Å³).",
    )
    add_model_flags(parser)
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="structures with or without labels: any file ASE reads (all frames), or an "
        "allegro-ase HDF5 dataset (.h5)",
    )
    parser.add_argument(
        "-o",
        "--out",
        help="extxyz file of the predicted energy, forces and stress; the reference labels are "
        "kept as ref_energy, ref_forces and ref_stress",
    )
    parser.add_argument("--plot", help="parity plot (.png, .pdf, .svg); needs matplotlib")
    for quantity, where in (("energy", "info"), ("forces", "arrays"), ("stress", "info")):
        parser.add_argument(
            f"--{quantity}-key",
            metavar="KEY",
            help=f"read the reference {quantity} from atoms.{where}[KEY] (an extxyz "
            f"{'column' if where == 'arrays' else 'comment-line key'} such as REF_{quantity}) "
            "instead of the file's standard calculator results",
        )
    parser.set_defaults(run=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    """Predict every frame of ``args.files``, print the error table, write ``--out``/``--plot``."""
    import numpy as np

    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise CommandError("--plot needs matplotlib: pip install 'allegro-ase[plot]'.")
    frames = [atoms for path in args.files for atoms in read_frames(path)]
    frames = labels_from_keys(frames, args.energy_key, args.forces_key, args.stress_key)
    calc = load_calculator(args)
    predicted = []
    with progress_bar(len(frames), "eval", args.quiet, unit="frame") as bar:
        for atoms in frames:
            predicted.append(predict(calc, atoms))
            bar.update()
    pairs = label_pairs(frames, predicted)
    print(
        f"{len(frames)} frames, {sum(len(atoms) for atoms in frames)} atoms "
        f"from {', '.join(args.files)}"
    )
    if pairs:
        print_table(error_table(pairs), {key: len(ref) for key, (ref, _) in pairs.items()})
    else:
        print("no reference labels in the input: predictions only")
    if args.out:
        write_frames(args.out, predicted)
        print(f"predictions: {args.out}")
    if args.plot and pairs:
        from ..plots import parity

        parity(
            {key: np.concatenate(ref) for key, (ref, _) in pairs.items()},
            {key: np.concatenate(pred) for key, (_, pred) in pairs.items()},
            args.plot,
        )
        print(f"parity plot: {args.plot}")
    elif args.plot:
        print("no parity plot: the input has no labels")
    return 0


def predict(calc, atoms):
    """Return a copy of ``atoms`` holding ``calc``'s predictions and the old labels as ``ref_*``.

    The copy's ``SinglePointCalculator`` holds energy (eV), forces (N, 3) eV/Å and, for a
    periodic cell of non-zero volume, stress (6,) eV/Å³. Reference labels go to
    ``info["ref_energy"]``, ``arrays["ref_forces"]`` and ``info["ref_stress"]``.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    out = atoms.copy()
    for key, value in labels(atoms).items():
        if key == "forces":
            out.arrays["ref_forces"] = value
        else:
            out.info[f"ref_{key}"] = value
    out.calc = calc
    properties = ["energy", "forces"]
    if atoms.pbc.any() and abs(atoms.cell.volume) > 0:
        properties.append("stress")
    calc.calculate(out, properties)
    results = {key: calc.results[key] for key in properties}
    out.calc = SinglePointCalculator(out, **results)
    return out


def labels_from_keys(frames, energy_key, forces_key, stress_key) -> list:
    """Frames whose reference labels are read from ``info``/``arrays`` keys, as calculator results.

    Without keys the frames are returned as they are. A key that no frame holds is an error
    naming the keys the first frame has; frames without it are unlabelled for that quantity.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    wanted = {
        name: (key, where)
        for name, key, where in (
            ("energy", energy_key, "info"),
            ("forces", forces_key, "arrays"),
            ("stress", stress_key, "info"),
        )
        if key
    }
    if not wanted:
        return frames
    for name, (key, where) in wanted.items():
        if not any(key in getattr(atoms, where) for atoms in frames):
            raise CommandError(
                f"--{name}-key {key}: no frame has atoms.{where}[{key!r}]; the first frame has "
                f"info keys {sorted(frames[0].info)} and arrays {sorted(frames[0].arrays)}."
            )
    relabelled = []
    for atoms in frames:
        found = {
            name: getattr(atoms, where)[key]
            for name, (key, where) in wanted.items()
            if key in getattr(atoms, where)
        }
        copy = atoms.copy()
        copy.calc = SinglePointCalculator(copy, **found)
        relabelled.append(copy)
    return relabelled


def labels(atoms) -> dict:
    """Return the reference energy (eV), forces (N, 3) and Voigt stress (6,) stored with ``atoms``."""
    import numpy as np

    results = getattr(atoms.calc, "results", None) or {}
    found = {}
    if results.get("energy") is not None:
        found["energy"] = float(results["energy"])
    if results.get("forces") is not None:
        found["forces"] = np.asarray(results["forces"], dtype=float).reshape(len(atoms), 3)
    stress = results.get("stress")
    if stress is not None:
        stress = np.asarray(stress, dtype=float)
        if stress.shape == (3, 3):
            stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        found["stress"] = stress.reshape(6)
    return found


def label_pairs(frames, predicted) -> dict:
    """Quantity -> (reference arrays, predicted arrays), eV-based, over the labelled frames.

    ``energy_per_atom`` holds one (1,) array per frame, ``forces`` (N, 3) arrays, ``stress``
    (3, 3) arrays; a quantity absent from every frame is left out.
    """
    import numpy as np
    from ase.stress import voigt_6_to_full_3x3_stress

    pairs: dict = {}
    for atoms, out in zip(frames, predicted, strict=True):
        reference, results = labels(atoms), out.calc.results
        if "energy" in reference:
            per_atom = [reference["energy"] / len(atoms)], [results["energy"] / len(atoms)]
            _append(pairs, "energy_per_atom", *map(np.asarray, per_atom))
        if "forces" in reference:
            _append(pairs, "forces", reference["forces"], results["forces"])
        if "stress" in reference and "stress" in results:
            full = voigt_6_to_full_3x3_stress  # all 9 components, as the model cards count them
            _append(pairs, "stress", full(reference["stress"]), full(results["stress"]))
    return pairs


def _append(pairs: dict, key: str, reference, prediction) -> None:
    ref, pred = pairs.setdefault(key, ([], []))
    ref.append(reference)
    pred.append(prediction)


def error_table(pairs: Mapping) -> dict[str, tuple[float, float]]:
    """Quantity -> (MAE, RMSE) over all components, in the units of :data:`UNITS`."""
    import numpy as np

    table = {}
    for key, (reference, prediction) in pairs.items():
        error = np.concatenate([np.ravel(p) for p in prediction]) - np.concatenate(
            [np.ravel(r) for r in reference]
        )
        scale = UNITS[key][1]
        table[key] = (
            scale * float(np.mean(np.abs(error))),
            scale * math.sqrt(float(np.mean(error**2))),
        )
    return table


def print_table(table: Mapping[str, tuple[float, float]], counts: Mapping[str, int]) -> None:
    """Print one row per quantity: labelled frames, MAE, RMSE, unit."""
    print(f"{'quantity':16s} {'frames':>7s} {'MAE':>10s} {'RMSE':>10s}  unit")
    for key, (mae, rmse) in table.items():
        print(f"{key:16s} {counts[key]:7d} {mae:10.4f} {rmse:10.4f}  {UNITS[key][0]}")
