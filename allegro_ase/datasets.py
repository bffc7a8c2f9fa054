"""Labelled structures on disk: one HDF5 schema for every training set, and extxyz conversion.

Schema ``allegro-ase-dataset/1`` (one HDF5 file, frames stored back to back):

================ ============= ======= ====================================================
dataset          shape         dtype   meaning
================ ============= ======= ====================================================
``n_atoms``      (F,)          int32   atoms in each frame; frame f owns rows
                                       ``sum(n_atoms[:f]) : sum(n_atoms[:f + 1])``
``numbers``      (A,)          uint8   atomic numbers, A = sum(n_atoms)
``positions``    (A, 3)        float64 Cartesian positions, Å
``forces``       (A, 3)        float32 forces, eV/Å (float32 keeps 7 digits: < 1e-6 eV/Å)
``cell``         (F, 3, 3)     float64 lattice vectors as rows, Å (zeros for molecules)
``pbc``          (F, 3)        bool    periodic directions
``energy``       (F,)          float64 total energy, eV
``stress``       (F, 3, 3)     float64 stress, eV/Å³, ASE sign; NaN where not labelled
``config_type``  (F,)          str     family of the frame ("bulk", "slab", "md_900K", ...)
``task``         (F,)          str     optional: the generator task that made the frame (one
                                       MD trajectory, say); files written before it existed
                                       lack it and read as ""
================ ============= ======= ====================================================

File attributes: ``schema``, ``method`` (the reference method, e.g. "EMT"), ``metadata`` (a JSON
string: code versions, seeds, generator command) and ``completed_tasks`` (a JSON list that
generators use to resume after being cut off).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

SCHEMA = "allegro-ase-dataset/1"
_PER_ATOM = {"numbers": ("u1", ()), "positions": ("f8", (3,)), "forces": ("f4", (3,))}
_PER_FRAME = {
    "n_atoms": ("i4", ()),
    "cell": ("f8", (3, 3)),
    "pbc": ("?", (3,)),
    "energy": ("f8", ()),
    "stress": ("f8", (3, 3)),
    "config_type": (h5py.string_dtype(), ()),
}


@dataclass
class Frame:
    """One labelled structure.

    Attributes
    ----------
    numbers : np.ndarray
        (N,) atomic numbers.
    positions : np.ndarray
        (N, 3) positions, Å.
    cell : np.ndarray
        (3, 3) lattice vectors as rows, Å.
    pbc : np.ndarray
        (3,) bool.
    energy : float
        Total energy, eV.
    forces : np.ndarray
        (N, 3) forces, eV/Å.
    stress : np.ndarray or None
        (3, 3) stress in eV/Å³ (ASE sign), or None when not labelled.
    config_type : str
        Family the frame was sampled from.
    task : str
        Generator task that made the frame (one MD trajectory, say), "" when unknown. Frames of
        one task are correlated; ``split: {by: task}`` keeps them in one training split.
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None = None
    config_type: str = ""
    task: str = ""

    @classmethod
    def from_atoms(cls, atoms: Atoms, config_type: str | None = None) -> Frame:
        """Read labels from ``atoms.calc`` (energy, forces and, if present, stress)."""
        calc = atoms.calc
        if calc is None:
            raise ValueError("The Atoms has no calculator, so there are no labels to store.")
        stress = calc.results.get("stress")
        if stress is not None:
            stress = voigt_to_matrix(np.asarray(stress))
        return cls(
            numbers=atoms.numbers.copy(),
            positions=atoms.positions.copy(),
            cell=atoms.cell.array.copy(),
            pbc=atoms.pbc.copy(),
            energy=float(calc.results["energy"]),
            forces=np.array(calc.results["forces"]),
            stress=stress,
            config_type=config_type
            if config_type is not None
            else atoms.info.get("config_type", ""),
            task=str(atoms.info.get("task", "")),
        )

    def to_atoms(self) -> Atoms:
        """Return an ``Atoms`` whose ``SinglePointCalculator`` holds the labels."""
        atoms = Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)
        atoms.info["config_type"] = self.config_type
        if self.task:
            atoms.info["task"] = self.task
        results = {"energy": self.energy, "forces": np.asarray(self.forces, dtype=np.float64)}
        if self.stress is not None:
            results["stress"] = np.asarray(self.stress)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms


def voigt_to_matrix(stress: np.ndarray) -> np.ndarray:
    """(6,) Voigt stress (xx, yy, zz, yz, xz, xy) or (3, 3) → (3, 3)."""
    if stress.shape == (3, 3):
        return stress.astype(np.float64)
    xx, yy, zz, yz, xz, xy = stress
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]], dtype=np.float64)


class FrameWriter:
    """Append frames to an HDF5 dataset, creating it or resuming an existing one.

    Parameters
    ----------
    path : str or Path
        The HDF5 file.
    method : str
        Reference method of the labels; an existing file must have the same one.
    metadata : dict
        JSON-serialisable provenance (code versions, seeds, command); stored on creation.
    """

    def __init__(self, path: str | Path, method: str, metadata: dict | None = None):
        self.path = Path(path)
        exists = self.path.exists()
        self._file = h5py.File(self.path, "a")
        if exists:
            if self._file.attrs.get("schema") != SCHEMA or self._file.attrs.get("method") != method:
                self._file.close()
                raise ValueError(
                    f"{self.path} is not an {SCHEMA} file of {method!r} labels; "
                    "choose another output path or delete it."
                )
            return
        self._file.attrs.update(
            schema=SCHEMA,
            method=method,
            metadata=json.dumps(metadata or {}),
            completed_tasks="[]",
        )
        for name, (dtype, shape) in {**_PER_ATOM, **_PER_FRAME}.items():
            self._file.create_dataset(
                name,
                shape=(0, *shape),
                maxshape=(None, *shape),
                dtype=dtype,
                chunks=True,
                compression="gzip" if shape else None,
            )

    @property
    def completed_tasks(self) -> set[str]:
        """Names of generator tasks already written (for resuming)."""
        return set(json.loads(self._file.attrs["completed_tasks"]))

    def __len__(self) -> int:
        return self._file["n_atoms"].shape[0]

    def append(self, frames: Sequence[Frame], task: str | None = None) -> None:
        """Write ``frames`` and, if given, mark ``task`` completed, then flush to disk.

        Each frame's ``task`` label is its own, or ``task`` where the frame has none.
        """
        if frames:
            self._ensure_task_column()
            columns = {
                "numbers": np.concatenate([f.numbers for f in frames]),
                "positions": np.concatenate([f.positions for f in frames]),
                "forces": np.concatenate([f.forces for f in frames]),
                "n_atoms": np.array([len(f.numbers) for f in frames]),
                "cell": np.stack([f.cell for f in frames]),
                "pbc": np.stack([f.pbc for f in frames]),
                "energy": np.array([f.energy for f in frames]),
                "stress": np.stack(
                    [np.full((3, 3), np.nan) if f.stress is None else f.stress for f in frames]
                ),
                "config_type": np.array([f.config_type for f in frames], dtype=object),
                "task": np.array([f.task or task or "" for f in frames], dtype=object),
            }
            for name, values in columns.items():
                dataset = self._file[name]
                start = dataset.shape[0]
                dataset.resize(start + len(values), axis=0)
                dataset[start:] = values
        if task is not None:
            self._file.attrs["completed_tasks"] = json.dumps(sorted(self.completed_tasks | {task}))
        self._file.flush()

    def _ensure_task_column(self) -> None:
        """Add the optional ``task`` column to a file written without it ("" for old frames)."""
        if "task" in self._file:
            return
        self._file.create_dataset(
            "task",
            data=np.full(len(self), "", dtype=object),
            maxshape=(None,),
            dtype=h5py.string_dtype(),
            chunks=True,
        )

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_hdf5(path: str | Path) -> list[Frame]:
    """All frames of an ``allegro-ase-dataset/1`` file."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("schema") != SCHEMA:
            raise ValueError(f"{path} is not an {SCHEMA} file (schema={f.attrs.get('schema')!r}).")
        columns = {name: f[name][()] for name in {**_PER_ATOM, **_PER_FRAME}}
        tasks = f["task"][()] if "task" in f else np.full(len(columns["n_atoms"]), b"")
    bounds = np.concatenate([[0], np.cumsum(columns["n_atoms"])])
    frames = []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=False)):
        stress = columns["stress"][i]
        frames.append(
            Frame(
                numbers=columns["numbers"][lo:hi].astype(np.int64),
                positions=columns["positions"][lo:hi],
                cell=columns["cell"][i],
                pbc=columns["pbc"][i],
                energy=float(columns["energy"][i]),
                forces=columns["forces"][lo:hi].astype(np.float64),
                stress=None if np.isnan(stress).any() else stress,
                config_type=columns["config_type"][i].decode(),
                task=tasks[i].decode(),
            )
        )
    return frames


def read_attributes(path: str | Path) -> dict:
    """Return the file attributes: ``method``, ``metadata`` (decoded) and the frame count."""
    with h5py.File(path, "r") as f:
        return {
            "method": str(f.attrs["method"]),
            "metadata": json.loads(f.attrs["metadata"]),
            "num_frames": int(f["n_atoms"].shape[0]),
        }


def read_frames(path: str | Path) -> list[Frame]:
    """Frames from ``.h5``/``.hdf5`` (our schema) or any file ASE reads with labels (extxyz...)."""
    path = Path(path)
    if path.suffix in {".h5", ".hdf5"}:
        return read_hdf5(path)
    from ase.io import read

    return [Frame.from_atoms(atoms) for atoms in read(path, index=":")]


def write_extxyz(frames: Iterable[Frame], path: str | Path) -> None:
    """Write frames as extended XYZ with energy, forces, stress and ``config_type``."""
    from ase.io import write

    write(path, [frame.to_atoms() for frame in frames], format="extxyz")
