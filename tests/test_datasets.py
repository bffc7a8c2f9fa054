"""The HDF5 dataset schema: lossless round trips, resumable appends, extxyz import/export."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from allegro_ase.datasets import (
    Frame,
    FrameWriter,
    read_attributes,
    read_frames,
    read_hdf5,
    write_extxyz,
)


def labelled_frames() -> list[Frame]:
    crystal = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    crystal.numbers[3] = 79
    crystal.rattle(0.05, seed=0)
    crystal.calc = EMT()
    crystal.get_stress()
    mol = molecule("CH3CH2OH")
    mol.calc = EMT()
    mol.get_forces()  # no stress label for a molecule
    return [Frame.from_atoms(crystal, "bulk"), Frame.from_atoms(mol, "molecule")]


def assert_same(a: Frame, b: Frame, force_atol: float = 1e-6, position_atol: float = 0.0) -> None:
    """Frames agree; HDF5 keeps positions exactly, extxyz to its 8 printed decimals."""
    np.testing.assert_array_equal(a.numbers, b.numbers)
    np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=position_atol)
    np.testing.assert_allclose(a.cell, b.cell, rtol=0, atol=position_atol)
    np.testing.assert_array_equal(a.pbc, b.pbc)
    assert a.energy == pytest.approx(b.energy, rel=1e-12)
    np.testing.assert_allclose(a.forces, b.forces, rtol=0, atol=force_atol)
    assert (a.stress is None) == (b.stress is None)
    if a.stress is not None:
        np.testing.assert_allclose(a.stress, b.stress, rtol=1e-10, atol=1e-18)
    assert a.config_type == b.config_type


def test_hdf5_round_trip_keeps_every_label(tmp_path):
    frames = labelled_frames()
    with FrameWriter(tmp_path / "d.h5", "EMT", {"seed": 1}) as writer:
        writer.append(frames)
    back = read_hdf5(tmp_path / "d.h5")
    for a, b in zip(frames, back, strict=True):
        assert_same(a, b, force_atol=1e-6)  # forces are stored as float32
    assert read_attributes(tmp_path / "d.h5") == {
        "method": "EMT",
        "metadata": {"seed": 1},
        "num_frames": 2,
    }


def test_appends_resume_and_remember_completed_tasks(tmp_path):
    frames = labelled_frames()
    with FrameWriter(tmp_path / "d.h5", "EMT") as writer:
        writer.append(frames[:1], task="first")
    with FrameWriter(tmp_path / "d.h5", "EMT") as writer:
        assert writer.completed_tasks == {"first"} and len(writer) == 1
        writer.append(frames[1:], task="second")
    back = read_hdf5(tmp_path / "d.h5")
    assert [f.config_type for f in back] == ["bulk", "molecule"]
    assert [f.task for f in back] == ["first", "second"]  # each frame remembers its task
    assert_same(frames[1], back[1])


def test_frames_keep_their_own_task_and_old_files_without_tasks_still_read(tmp_path):
    frames = labelled_frames()
    frames[0].task = "md_300K_chunk03"
    with FrameWriter(tmp_path / "d.h5", "EMT") as writer:
        writer.append(frames, task="copy")
    assert [f.task for f in read_hdf5(tmp_path / "d.h5")] == ["md_300K_chunk03", "copy"]
    with h5py.File(tmp_path / "d.h5", "a") as handle:  # a file written before the task column
        del handle["task"]
    assert [f.task for f in read_hdf5(tmp_path / "d.h5")] == ["", ""]
    with FrameWriter(tmp_path / "d.h5", "EMT") as writer:  # resuming it adds the column
        writer.append(frames[1:], task="later")
    assert [f.task for f in read_hdf5(tmp_path / "d.h5")] == ["", "", "later"]


def test_other_method_or_foreign_file_is_refused(tmp_path):
    with FrameWriter(tmp_path / "d.h5", "EMT") as writer:
        writer.append(labelled_frames())
    with pytest.raises(ValueError, match="not an allegro-ase-dataset/1 file of 'GFN2-xTB'"):
        FrameWriter(tmp_path / "d.h5", "GFN2-xTB")
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="not an allegro-ase-dataset/1 file"):
        read_hdf5(tmp_path / "other.h5")


def test_extxyz_export_and_import_round_trip(tmp_path):
    frames = labelled_frames()
    write_extxyz(frames, tmp_path / "d.extxyz")
    back = read_frames(tmp_path / "d.extxyz")
    for a, b in zip(frames, back, strict=True):
        assert_same(a, b, force_atol=1e-8, position_atol=1e-8)


def test_frame_without_labels_is_refused():
    with pytest.raises(ValueError, match="no calculator"):
        Frame.from_atoms(bulk("Cu"))
