"""Every shipped model's card states held-out errors that a re-evaluation reproduces."""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

import pytest

from allegro_ase.zoo import list_models

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from compare_models import common_frames, comparison_table  # noqa: E402
from evaluate_model import heldout_metrics  # noqa: E402

from allegro_ase.datasets import read_hdf5  # noqa: E402

ROW = re.compile(
    r"^\|\s*(energy per atom|forces|stress)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", re.M
)
KEYS = {"energy per atom": "energy_per_atom", "forces": "forces", "stress": "stress"}
SHIPPED = [entry for entry in list_models() if entry.url is None]


def card_errors(card: str) -> dict[str, float]:
    """{"forces_mae": ..., ...} from the card's held-out table (meV units)."""
    table = card[card.index("## Held-out errors") :].split("\n## ")[0]  # up to the next section
    errors = {}
    for quantity, mae, rmse in ROW.findall(table):
        errors[f"{KEYS[quantity]}_mae"] = float(mae)
        errors[f"{KEYS[quantity]}_rmse"] = float(rmse)
    return errors


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.name)
def test_card_numbers_match_a_reevaluation_of_the_heldout_frames(entry):
    card = (entry.root / entry.card).read_text()
    stated = card_errors(card)
    assert {"energy_per_atom_mae", "forces_mae"} <= set(stated), "card has no held-out table"
    frames = read_hdf5(ROOT / "tests" / "data" / "heldout" / f"{entry.name}.h5")
    measured, _ = heldout_metrics(entry.root / entry.file, frames)
    assert f"{measured['num_frames']} held-out frames" in card
    for key, value in stated.items():
        assert measured[key] == pytest.approx(value, abs=0.006), key


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.name)
def test_card_says_what_a_user_must_know(entry):
    card = (entry.root / entry.card).read_text()
    for heading in ("## Reference method", "## Data", "## Held-out errors", "## Limitations"):
        assert heading in card, heading
    folder = (entry.root / entry.file).parent
    assert (folder / "config.yaml").exists() and (folder / "parity.png").exists()
    assert "allegro-ase train" in card


def _numbers(text: str) -> list[float]:
    """Every number in the quantity rows of the first Markdown table in ``text``, row by row."""
    lines = text.splitlines()
    first = next(k for k, line in enumerate(lines) if line.startswith("|"))
    table = itertools.takewhile(lambda line: line.startswith("|"), lines[first:])
    rows = [line for line in table if "MAE" not in line]  # not the header
    return [float(x) for row in rows for x in re.findall(r"(?<=\| )[\d.]+(?= \|)", row)]


@pytest.mark.parametrize(("name", "other"), [("nequip-emt-metals", "allegro-emt-metals")])
def test_architecture_comparison_matches_a_reevaluation(name, other):
    """The card's table of both models on the frames neither trained on is reproduced."""
    entries = {entry.name: entry for entry in SHIPPED}
    card = (entries[name].root / entries[name].card).read_text()
    section = card[card.index(f"## Compared with {other}") :].split("\n## ")[0]
    heldout = ROOT / "tests" / "data" / "heldout"
    frames = common_frames([read_hdf5(heldout / f"{n}.h5") for n in (name, other)])
    assert f"{len(frames)} frames" in section
    table = comparison_table([entries[n].root / entries[n].file for n in (name, other)], frames)
    stated, measured = _numbers(section), _numbers(table)
    assert len(stated) == len(measured) > 0
    assert stated == pytest.approx(measured, abs=0.006)
