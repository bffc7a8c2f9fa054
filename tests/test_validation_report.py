"""The validation tables of the model cards: their protocol agrees with itself and with EMT, and
every card's marked section belongs to the shipped weights; the aspirin transfer errors are
reproduced from the committed frames."""

from __future__ import annotations

import copy
import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from allegro_ase import AllegroCalculator
from allegro_ase.zoo import list_models

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from evaluate_model import heldout_metrics  # noqa: E402
from validation_metals import cubic_elastic_constants, equation_of_state  # noqa: E402
from validation_report import BEGIN, END, parse_block  # noqa: E402

from allegro_ase.datasets import read_hdf5  # noqa: E402

SHIPPED = [entry for entry in list_models() if entry.url is None]
METALS_MODELS = [entry.name for entry in SHIPPED if set(entry.species) == {"Al", "Cu", "Ag", "Au"}]

# model against EMT (float64 models): what a model fitted to EMT bulk frames must reach
LATTICE_CONSTANT_ATOL = 0.01  # Å
BULK_MODULUS_RTOL = 0.05
# the protocol against itself, EMT only
EOS_ELASTIC_ATOL = 0.5  # GPa: B from E(V) against (C11 + 2 C12) / 3 from stresses
PRESSURE_ATOL = 3e-4  # eV/Å³ at the fitted lattice constant (a 0.1 % error in a gives ~8e-3)
CARD_ATOL = 0.006  # printed with two decimals

TRANSFER_FRAMES = ROOT / "tests" / "data" / "heldout" / "allegro-gfn2-aspirin-transfer.h5"
TRANSFER_SHA256 = "2f32b5a1b6263a0cce9e4bce907182e5d4e3fb33b53a5456fc38c229d40acf52"


def decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


@pytest.fixture(scope="module")
def emt_cu():
    return equation_of_state("Cu", EMT)


def test_bulk_modulus_from_energy_equals_elastic_constants_for_emt(emt_cu):
    a0, bulk_modulus, _ = emt_cu
    c11, c12, _ = cubic_elastic_constants("Cu", a0, EMT)
    assert bulk_modulus == pytest.approx((c11 + 2 * c12) / 3, abs=EOS_ELASTIC_ATOL)


def test_pressure_vanishes_at_the_fitted_lattice_constant(emt_cu):
    atoms = bulk("Cu", "fcc", a=emt_cu[0], cubic=True)
    atoms.calc = EMT()
    np.testing.assert_allclose(atoms.get_stress()[:3], 0.0, atol=PRESSURE_ATOL)


@pytest.mark.parametrize("name", METALS_MODELS)
def test_cu_lattice_constant_and_bulk_modulus_agree_with_emt_and_the_card(name, emt_cu):
    shared = AllegroCalculator.from_pretrained(name, device="cpu", dtype="float64")
    a0, bulk_modulus, _ = equation_of_state("Cu", lambda: copy.copy(shared))
    assert a0 == pytest.approx(emt_cu[0], abs=LATTICE_CONSTANT_ATOL)
    assert bulk_modulus == pytest.approx(emt_cu[1], rel=BULK_MODULUS_RTOL)

    entry = next(entry for entry in SHIPPED if entry.name == name)
    block = (entry.root / entry.card).read_text().split(BEGIN, 1)[1].split(END, 1)[0]
    for quantity, value in (("lattice constant (Å)", a0), ("bulk modulus (GPa)", bulk_modulus)):
        line = next(line for line in block.splitlines() if line.startswith(f"| Cu | {quantity} |"))
        printed = line.split("|")[4].strip()  # the model column
        assert float(printed) == pytest.approx(value, abs=0.6 * 10 ** -decimals(printed)), quantity


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.name)
def test_card_validation_section_parses_and_belongs_to_the_shipped_weights(entry):
    section = parse_block((entry.root / entry.card).read_text())
    assert section["sha256"] == entry.sha256, (
        f"the validation table of {entry.name} was made for other weights: rerun "
        f"`python tools/validate_model.py {entry.name} --update-card`"
    )
    assert len(section["rows"]) >= 10
    for system, quantity, reference, model, difference, digits in section["rows"]:
        assert np.isfinite([reference, model, difference]).all(), (system, quantity)
        step = 10.0**-digits  # each number rounded on its own
        assert difference == pytest.approx(model - reference, abs=1.01 * step), (system, quantity)


def test_parse_block_refuses_a_card_without_markers():
    with pytest.raises(ValueError, match="no <!-- validation -->"):
        parse_block("# a card\n\n## Held-out errors\n")


def test_aspirin_transfer_errors_in_the_card_match_a_reevaluation():
    assert hashlib.sha256(TRANSFER_FRAMES.read_bytes()).hexdigest() == TRANSFER_SHA256
    entry = next(entry for entry in SHIPPED if entry.name == "allegro-gfn2-aspirin")
    card = (entry.root / entry.card).read_text()
    section = card[card.index("## How far these numbers transfer") :].split("\n## ")[0]
    assert TRANSFER_SHA256[:8] in section
    frames = read_hdf5(TRANSFER_FRAMES)
    _, metrics = heldout_metrics(entry.root / entry.file, frames)  # one pass, frames in order
    energy_errors = 1000 * np.abs(np.subtract(*metrics.arrays("energy_per_atom")))
    force_errors = 1000 * np.abs(np.subtract(*metrics.arrays("forces"))).reshape(len(frames), -1)
    names = [re.search(r"[a-z]+_md_\d+K", frame.config_type).group(0) for frame in frames]
    groups = {"transfer, all": np.ones(len(frames), dtype=bool)}
    for name in sorted(set(names)):
        groups[f"transfer, {name}"] = np.array([n == name for n in names])
    for label, selected in groups.items():
        line = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
        count, energy, forces = (float(cell) for cell in line.strip("| \n").split("|")[1:4])
        assert count == selected.sum(), label
        assert energy == pytest.approx(energy_errors[selected].mean(), abs=CARD_ATOL), label
        assert forces == pytest.approx(force_errors[selected].mean(), abs=CARD_ATOL), label
