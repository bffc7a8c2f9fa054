"""Validate a zoo model against its reference method, property by property: the cards' validation tables.

    OMP_NUM_THREADS=1 python tools/validate_model.py allegro-emt-metals [--update-card]
    OMP_NUM_THREADS=1 python tools/validate_model.py allegro-gfn2-aspirin [--update-card]

The model runs in float64 (``from_pretrained(name, dtype="float64")``), its reference method
beside it with the same protocol (``tools/validation_metals.py``, ``tools/validation_molecule.py``):

- EMT metals (Al, Cu, Ag, Au), against ASE's ``EMT``: lattice constant and bulk modulus (E(V)
  fit), C11/C12/C44 (strained relaxed cell), relaxed (100)/(111) surface energies, vacancy
  formation energy and migration barrier (NEB), acoustic phonons at X and L, and the Au hop on
  Al(100) of ``tools/check_barriers.py``;
- aspirin, against GFN2-xTB (tblite): relaxed bond lengths, harmonic frequencies, a relaxed scan
  of the ring-ester torsion and the energies of two other conformers.

Prints a Markdown table (reference, model, difference); ``--update-card`` writes it into the
model card between ``<!-- validation -->`` and ``<!-- /validation -->`` (the section is added
before "## Limitations" when the markers are missing). Nothing else in the card is touched.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import textwrap
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from validation_metals import element_properties  # noqa: E402

from allegro_ase import AllegroCalculator  # noqa: E402
from allegro_ase.zoo import get_entry  # noqa: E402

METALS = ("Al", "Cu", "Ag", "Au")
BEGIN, END = "<!-- validation -->", "<!-- /validation -->"
HEADING = "## Validation against the reference method"
DIGITS = {"Å": 4, "GPa": 1, "J/m²": 3, "eV": 3, "THz": 2, "cm⁻¹": 0, "meV": 0}


def signed(value: float, digits: int) -> str:
    """``value`` with a sign and ``digits`` decimals; one that rounds to zero is "+0.0", not "-0.0"."""
    text = f"{value:+.{digits}f}"
    return text.replace("-", "+") if float(text) == 0 else text


@dataclass(frozen=True)
class Row:
    """One property: its value with the reference method and with the model."""

    system: str
    quantity: str  # label with the unit in parentheses, e.g. "C11 (GPa)"
    reference: float
    model: float
    transfer: bool = False  # a process absent from the model's training data

    @property
    def digits(self) -> int:
        """Decimals printed, from the unit."""
        return DIGITS[re.search(r"\(([^)]+)\)$", self.quantity).group(1)]

    def cells(self) -> list[str]:
        """Table cells: system, quantity, reference, model, difference, relative difference."""
        d = self.digits
        diff = self.model - self.reference
        relative = (
            signed(100 * diff / abs(self.reference), 1) if abs(self.reference) > 1e-9 else "-"
        )
        label = self.quantity + (" †" if self.transfer else "")
        values = [f"{self.reference:.{d}f}", f"{self.model:.{d}f}", signed(diff, d)]
        return [self.system, label, *values, relative]


def calculators(name: str):
    """``make_calc`` for the model (float64 copies of one calculator) and the reference method."""
    shared = AllegroCalculator.from_pretrained(name, device="cpu", dtype="float64")
    return lambda: copy.copy(shared)


def hop_paths_in_training_data(name: str) -> bool:
    """Whether the model's training config lists the adatom hop-path frames (emt_hops)."""
    config = yaml.safe_load((ROOT / "pretrained" / name / "config.yaml").read_text())
    datasets = config["dataset"] if isinstance(config["dataset"], list) else [config["dataset"]]
    return any("hops" in str(path) for path in datasets)


def metals_rows(name: str) -> tuple[list[Row], list[str]]:
    """Rows for an EMT metals model, and notes under the table."""
    from ase.calculators.emt import EMT
    from check_barriers import PROCESSES
    from neb_au_on_al100 import neb_barrier

    model = calculators(name)
    rows = []
    for element in METALS:
        reference, predicted = element_properties(element, EMT), element_properties(element, model)
        for quantity, value in reference.items():
            transfer = quantity.startswith("vacancy migration")
            rows.append(Row(element, quantity, value, predicted[quantity], transfer))
    make_endpoints, options = PROCESSES["Au hop on Al(100)"]
    hop = [neb_barrier(*make_endpoints(), make, **options) for make in (EMT, model)]
    in_data = hop_paths_in_training_data(name)
    rows.append(Row("Au on Al(100)", "adatom hop barrier, NEB (eV)", *hop, transfer=not in_data))
    notes = [
        summary(rows),
        "† a process whose transition state is not in the training data: vacancy jumps "
        + (
            "(the hop row's paths are in the data, on a 3×3×4 slab)."
            if in_data
            else "and the adatom hop."
        ),
    ]
    return rows, notes


def summary(rows: list[Row], threshold: float = 5.0) -> str:
    """A sentence naming the properties off by more than ``threshold`` % and the transfer rows."""
    relative = [(100 * (r.model - r.reference) / abs(r.reference), r) for r in rows if r.reference]
    large = sorted(
        (item for item in relative if abs(item[0]) >= threshold), key=lambda x: -abs(x[0])
    )
    text = (
        f"{len(large)} of {len(rows)} properties differ from the reference by {threshold:.0f} % or more"
        + (
            ": " + ", ".join(f"{r.system} {r.quantity.split(' (')[0]} {v:+.1f} %" for v, r in large)
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
            f" Barriers of processes absent from the training data (†): model − reference "
            f"{min(transfer):+.0f} to {max(transfer):+.0f} meV."
        )
    return text


def aspirin_rows(name: str) -> tuple[list[Row], list[str]]:
    """Rows for the aspirin model, and notes (frequency summary, torsion profile) under the table."""
    from make_xtb_dataset import bond_graph, calculator, start_geometry
    from validation_molecule import aspirin_properties

    start = start_geometry("aspirin")
    reference = aspirin_properties(start, calculator)
    predicted = aspirin_properties(start, calculators(name))
    rows = [
        Row("relaxed aspirin", f"{bond} (Å)", value, predicted["bonds"][bond])
        for bond, value in reference["bonds"].items()
    ]
    f_ref, f_model = reference["frequencies"], predicted["frequencies"]
    for rank in (1, 2, 3):
        rows.append(
            Row(
                "harmonic",
                f"mode {len(f_ref) + 1 - rank} of {len(f_ref)} (cm⁻¹)",
                f_ref[-rank],
                f_model[-rank],
            )
        )
    rows.append(Row("harmonic", "lowest mode (cm⁻¹)", f_ref[0], f_model[0]))
    marks = scan_marks(reference, predicted, calculator)
    intact = np.array([not mark for mark in marks]) & np.isfinite(predicted["scan_energies"])
    e_ref, e_model = reference["scan_energies"][intact], predicted["scan_energies"][intact]
    label = f"highest of the {int(intact.sum())} points the model keeps bonded (meV)"
    rows.append(Row("torsion scan", label, 1000 * np.max(e_ref), 1000 * np.max(e_model)))
    graph = bond_graph(reference["relaxed"])
    for conformer, (value, _) in reference["conformers"].items():
        label = {"carboxyl": "carboxyl turned 180°", "ester": "Z ester (acetyl turned 180°)"}
        model_value, turned = predicted["conformers"][conformer]
        kept = np.array_equal(bond_graph(turned), graph)
        quantity = (
            f"{label[conformer]}{'' if kept else ', model broke a bond ‡'}, above relaxed (meV)"
        )
        rows.append(Row("conformer", quantity, 1000 * value, 1000 * model_value, transfer=True))
    deviation = np.abs(f_model - f_ref)
    notes = [
        f"Harmonic frequencies, all {len(f_ref)} modes paired by rank: MAE {deviation.mean():.0f} cm⁻¹, "
        f"largest |Δ| {deviation.max():.0f} cm⁻¹, mean Δ {np.mean(f_model - f_ref):+.0f} cm⁻¹.",
        *scan_notes(reference, predicted, marks),
        "† the Z ester is the GFN2-xTB minimum but was hardly visited by the training MD (1000 K only); the turned "
        "carboxyl only at 750 and 1000 K.",
    ]
    return rows, notes


def scan_marks(reference: dict, predicted: dict, make_reference) -> list[str]:
    """Per scan point, "" or a ‡ note where the model's relaxation changed the covalent bond
    graph: the bonds that changed and the reference's energy (meV) of the model's geometry."""
    from make_xtb_dataset import bond_graph

    graph = bond_graph(reference["relaxed"])
    marks = []
    for atoms in predicted["scan_geometries"]:
        if atoms is None or np.array_equal(bond_graph(atoms), graph):
            marks.append("")
            continue
        single = atoms.copy()
        single.set_constraint()
        single.calc = make_reference()
        above = single.get_potential_energy() - reference["relaxed"].get_potential_energy()
        changed = np.argwhere(np.triu(bond_graph(atoms) != graph))
        pairs = ", ".join(f"{atoms[i].symbol}{i}-{atoms[j].symbol}{j}" for i, j in changed)
        marks.append(f"‡ {pairs}; GFN2-xTB there: {1000 * above:.0f}")
    return marks


def scan_notes(reference: dict, predicted: dict, marks: list[str]) -> list[str]:
    """The torsion profile: a summary sentence and a table (model points marked by ``marks``)."""
    e_ref, e_model = reference["scan_energies"], predicted["scan_energies"]
    broken = [mark for mark in marks if mark]
    profile = 1000 * (e_model - e_ref)
    intact = np.array([not mark for mark in marks]) & np.isfinite(profile)
    text = (
        f"Torsion profile (ring-ester dihedral C2-C1-O-C, relaxed scan, {len(e_ref)} points, "
        "energies above each method's relaxed molecule): "
    )
    if intact.any():
        text += (
            f"largest |Δ| {np.max(np.abs(profile[intact])):.0f} meV, MAE "
            f"{np.mean(np.abs(profile[intact])):.0f} meV over the {int(intact.sum())} points where "
            "the model kept aspirin's bonds"
        )
    if broken:
        text += (
            f"; at {len(broken)} point(s) (‡) the model's relaxation changed the covalent bond "
            "graph, a geometry GFN2-xTB puts far higher (0-based atom indices of "
            "`make_xtb_dataset.ASPIRIN`)"
        )
    if np.isnan(e_model).any():
        text += (
            f"; {int(np.isnan(e_model).sum())} point(s) not reached: the model collapsed two atoms"
        )
    lines = [
        text + ".",
        "| dihedral (°) | GFN2-xTB (meV) | model (meV) | Δ (meV) | note |",
        "|---|---|---|---|---|",
    ]
    for angle, a, b, mark in zip(reference["scan_angles"], e_ref, e_model, marks, strict=True):
        lines.append(
            f"| {angle:.0f} | {1000 * a:.0f} | {1000 * b:.0f} | {1000 * (b - a):+.0f} | {mark} |"
        )
    return lines


PROTOCOL = {
    "EMT": (
        "Each method at its own equilibrium: lattice constant and bulk modulus from a "
        "Birch-Murnaghan fit of E(V) (primitive cell, ±3 % in volume); C11/C12/C44 from ±0.5 % "
        "strains of the cubic cell at that lattice constant; surface energies of relaxed 1×1, "
        "7-layer slabs; vacancy formation and migration in a 2×2×2 cubic cell (31 atoms, fixed "
        "volume, relaxed ends, NEB with 3 images and a climbing image); phonons by finite "
        "displacements in a 4×4×4 supercell of the primitive cell; the Au hop as in "
        "`tools/check_barriers.py` (2×2×3 slab, 3 images)."
    ),
    "GFN2-xTB": (
        'GFN2-xTB through `tblite.ase.TBLite(method="GFN2-xTB", accuracy=0.01)`. Each method '
        "relaxes the molecule from the same start (the E-ester conformer the training MD was run "
        "around; BFGS to 0.001 eV/Å); harmonic frequencies by central differences (0.01 Å); "
        "torsion scan of the ring-ester dihedral with every other coordinate relaxed; conformers: "
        "one group turned by 180° and relaxed again (`tools/make_xtb_transfer_frames.py`)."
    ),
}


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


def render_block(
    name: str, reference: str, rows: list[Row], notes: list[str], seconds: float, sha256: str
) -> str:
    """The text between the card's markers."""
    versions = ", ".join(
        f"{package} {version(package)}"
        for package in ("allegro-ase", "ase", "torch", "numpy")
        + (("tblite",) if reference == "GFN2-xTB" else ())
    )
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    lines = [
        wrap(
            f"The model as shipped, run in float64, against {reference} with the same protocol. "
            + PROTOCOL[reference]
        ),
        "",
        "```bash",
        f"OMP_NUM_THREADS=1 python tools/validate_model.py {name} --update-card",
        "```",
        "",
        wrap(
            f"Generated {date} ({versions}; model file sha256 `{sha256}`; {seconds:.0f} s on one "
            "shared CPU core)."
        ),
        "",
        *markdown_table(rows, reference),
        "",
    ]
    for note in notes:  # a table's lines are kept together, prose is wrapped
        if note.startswith("|"):
            lines.append(note)
        else:
            lines += ([""] if lines[-1].startswith("|") else []) + [wrap(note), ""]
    return "\n".join(lines).rstrip() + "\n"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "name", help="zoo model: allegro-emt-metals, nequip-emt-metals or allegro-gfn2-aspirin"
    )
    parser.add_argument(
        "--update-card", action="store_true", help="write the table into the model card"
    )
    args = parser.parse_args(argv)
    entry = get_entry(args.name)
    species = set(entry.species)
    if species == set(METALS):
        reference, validate = "EMT", metals_rows
    elif species == {"H", "C", "O"} and "aspirin" in entry.name:
        reference, validate = "GFN2-xTB", aspirin_rows
    else:
        sys.exit(
            f"{args.name}: no validation protocol for species {sorted(species)}; known: EMT metals {METALS}, aspirin."
        )
    t0 = time.perf_counter()
    rows, notes = validate(args.name)
    block = render_block(args.name, reference, rows, notes, time.perf_counter() - t0, entry.sha256)
    print(block)
    if args.update_card:
        update_card(entry.root / entry.card, block)
        print(f"written into {entry.root / entry.card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
