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
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from validation_metals import METALS, metals_rows  # noqa: E402
from validation_report import Row, markdown_table, update_card, wrap  # noqa: E402

from allegro_ase import AllegroCalculator  # noqa: E402
from allegro_ase.zoo import get_entry  # noqa: E402


def calculators(name: str):
    """``make_calc`` for a zoo model: float64 copies of one calculator (shared weights)."""
    shared = AllegroCalculator.from_pretrained(name, device="cpu", dtype="float64")
    return lambda: copy.copy(shared)


def hop_paths_in_training_data(name: str) -> bool:
    """Whether the model's data set held adatom hop paths (``make_emt_hop_frames.py``).

    Read from the card's held-out frames (``tests/data/heldout/NAME.h5``), drawn at random from
    the same data set as the training frames: ``hop_*`` frames there mean hop paths in training.
    """
    from allegro_ase.datasets import read_hdf5

    frames = read_hdf5(ROOT / "tests" / "data" / "heldout" / f"{name}.h5")
    return any(frame.config_type.startswith("hop") for frame in frames)


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
        "relaxes the molecule from the same start (the E-ester conformer, one of the three the training "
        "MD started from; BFGS to 0.001 eV/Å); harmonic frequencies by central differences (0.01 Å); "
        "torsion scan of the ring-ester dihedral with every other coordinate relaxed; conformers: "
        "one group turned by 180° and relaxed again (`tools/make_xtb_transfer_frames.py`)."
    ),
}


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
    t0 = time.perf_counter()
    if species == set(METALS):
        reference = "EMT"
        rows, notes = metals_rows(calculators(args.name), hop_paths_in_training_data(args.name))
    elif species == {"H", "C", "O"} and "aspirin" in entry.name:
        from validation_molecule import aspirin_rows  # needs tblite (the data extra)

        reference = "GFN2-xTB"
        rows, notes = aspirin_rows(calculators(args.name))
    else:
        sys.exit(
            f"{args.name}: no validation protocol for species {sorted(species)}; "
            f"known: EMT metals {METALS}, aspirin."
        )
    block = render_block(args.name, reference, rows, notes, time.perf_counter() - t0, entry.sha256)
    print(block)
    if args.update_card:
        update_card(entry.root / entry.card, block)
        print(f"written into {entry.root / entry.card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
