"""The examples run with a small step count and reproduce their reference method."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from ase.calculators.emt import EMT

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import md_nvt  # noqa: E402
import neb_au_on_al100  # noqa: E402
import relax_cell  # noqa: E402


def test_md_example_runs_and_reports(capsys):
    md_nvt.main(["--steps", "6", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "done: 6 steps of 108 atoms" in out
    assert out.count("T = ") >= 6


def test_relaxed_lattice_constant_matches_emt():
    results = relax_cell.main([])
    (a_emt, e_emt), (a_model, e_model) = results["EMT"], results["allegro-emt-metals"]
    assert a_model == pytest.approx(a_emt, abs=0.01)  # Å
    assert e_model == pytest.approx(e_emt, abs=0.005)  # eV/atom


def test_neb_setup_reproduces_the_emt_barrier():
    assert neb_au_on_al100.barrier(EMT) == pytest.approx(0.374, abs=0.002)  # ASE tutorial value


def test_au_adatom_hop_barrier_matches_emt():
    barriers = neb_au_on_al100.main([])
    assert barriers["allegro-emt-metals"] == pytest.approx(barriers["EMT"], abs=0.03)  # eV


def test_foundation_example_relaxes_with_the_look_alike(capsys):
    import foundation_model_relax

    result = foundation_model_relax.main(["--steps", "3"])
    assert result["energy"] < result["start_energy"]
    assert "3 FIRE steps" in capsys.readouterr().out
