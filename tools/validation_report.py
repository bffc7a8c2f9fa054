"""The validation table of a model card: rows, Markdown, and the card's marked section.

Used by ``tools/validate_model.py`` (which writes the section) and
``tests/test_validation_report.py`` (which reads it back).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

BEGIN, END = "<!-- validation -->", "<!-- /validation -->"
HEADING = "## Validation against the reference method"
DIGITS = {"Å": 4, "GPa": 1, "J/m²": 3, "eV": 3, "THz": 2, "cm⁻¹": 0, "meV": 0}


def signed(value: float, digits: int) -> str:
    """``value`` with a sign and ``digits`` decimals; one that rounds to zero is "0.0", unsigned."""
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


@dataclass(frozen=True)
class Row:
    """One property: its value with the reference method and with the model."""

    system: str
    quantity: str  # label with the unit in parentheses, e.g. "C11 (GPa)"
    reference: float
    model: float
    transfer: bool = False  # a process absent from the model's training data

    @property
    def unit(self) -> str:
        """The unit, from the label."""
        return re.search(r"\(([^)]+)\)$", self.quantity).group(1)

    @property
    def relative(self) -> float | None:
        """(model - reference) / |reference| in %; None for energies in meV, which are
        differences from an arbitrary zero (a conformer's energy, a point of a scan)."""
        if self.unit == "meV" or self.reference == 0:
            return None
        return 100 * (self.model - self.reference) / abs(self.reference)

    def cells(self) -> list[str]:
        """Table cells: system, quantity, reference, model, difference, relative difference."""
        d = DIGITS[self.unit]
        diff = self.model - self.reference
        relative = "-" if self.relative is None else signed(self.relative, 1)
        label = self.quantity + (" †" if self.transfer else "")
        values = [f"{self.reference:.{d}f}", f"{self.model:.{d}f}", signed(diff, d)]
        return [self.system, label, *values, relative]


def summary(rows: list[Row], threshold: float = 5.0) -> str:
    """A sentence naming the properties off by more than ``threshold`` % and the transfer rows."""
    large = sorted(
        ((r.relative, r) for r in rows if r.relative is not None and abs(r.relative) >= threshold),
        key=lambda item: -abs(item[0]),
    )
    text = (
        f"{len(large)} of {len(rows)} properties differ from the reference by "
        f"{threshold:.0f} % or more"
        + (
            ": " + ", ".join(f"{r.system} {r.quantity.split(' (')[0]} {v:+.1f}%" for v, r in large)
            if large
            else ""
        )
        + "."
    )
    transfer = [
        1000 * (r.model - r.reference) for r in rows if r.transfer and r.quantity.endswith("(eV)")
    ]
    if transfer:
        text += (
            " Barriers of processes absent from the training data (†): model − reference "
            + (f"{min(transfer):+.0f} to " if len(transfer) > 1 else "")
            + f"{max(transfer):+.0f} meV."
        )
    return text


def wrap(text: str) -> str:
    """Prose wrapped at 100 columns, as the rest of the cards."""
    return textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)


def markdown_table(rows: list[Row], reference: str) -> list[str]:
    """The table's lines: one row per property."""
    lines = [
        f"| system | property | {reference} | model | model − {reference} | relative (%) |",
        "|---|---|---|---|---|---|",
    ]
    return lines + ["| " + " | ".join(row.cells()) + " |" for row in rows]


def update_card(path: Path, block: str) -> None:
    """Replace the text between the validation markers of ``path`` (add the section if missing)."""
    text = path.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = f"{head}{BEGIN}\n{block}{END}{tail}"
    else:
        section = f"{HEADING}\n\n{BEGIN}\n{block}{END}\n\n"
        anchor = "## Limitations"
        text = (
            text.replace(anchor, section + anchor, 1)
            if anchor in text
            else f"{text.rstrip()}\n\n{section}"
        )
    path.write_text(text)


def parse_block(card: str) -> dict:
    """The card's validation section: model sha256 and rows.

    Each row is (system, property, reference, model, model - reference, decimals printed).
    """
    if BEGIN not in card or END not in card:
        raise ValueError(f"the card has no {BEGIN} ... {END} section")
    block = card.split(BEGIN, 1)[1].split(END, 1)[0]
    sha = re.search(r"model\s+file\s+sha256\s+`([0-9a-f]{64})`", block)
    rows = []
    table = block[block.index("| system | property |") :].split("\n\n")[0]
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        decimals = len(cells[4].split(".")[1]) if "." in cells[4] else 0
        rows.append((cells[0], cells[1].rstrip(" †"), *(float(c) for c in cells[2:5]), decimals))
    return {"sha256": sha.group(1) if sha else None, "rows": rows}
