"""Properties of aspirin from any ASE calculator: the molecule rows of ``tools/validate_model.py``.

Atom indices are those of ``make_xtb_dataset.ASPIRIN`` (0-based): ring carbons 0-5 (0 carries the
carboxyl, 1 the ester oxygen), carboxyl C 6, =O 7, O 8, H 9; ester O 10; acetyl C 11, =O 12,
methyl C 13. Every function takes ``make_calc``, a callable that returns a fresh calculator, so
GFN2-xTB and a model run the same protocol, each from its own relaxed molecule.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import InputError
from ase.constraints import FixInternals
from ase.optimize import BFGS
from ase.vibrations import Vibrations

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_xtb_dataset import bond_graph, calculator, start_geometry  # noqa: E402
from make_xtb_transfer_frames import CONFORMERS  # noqa: E402
from validation_report import Row  # noqa: E402

MakeCalc = Callable[[], object]
RELAX_FMAX = 1e-3  # eV/Å: tight, for harmonic frequencies
SCAN_FMAX = 0.01  # eV/Å, constrained relaxations of the torsion scan
BONDS = {
    "C=O carboxyl": [(6, 7)],
    "C=O acetyl": [(11, 12)],
    "C-O carboxyl (C-OH)": [(6, 8)],
    "C-O ester (ring C-O)": [(1, 10)],
    "C-O ester (O-C=O)": [(10, 11)],
    "C-C ring, mean": [(k, (k + 1) % 6) for k in range(6)],
    "O-H": [(8, 9)],
}
# ring-ester torsion C1-C2-O-C(=O) (0-based 0, 1, 10, 11; ring C1 carries the carboxyl, C2 the
# ester O) and the acetoxy atoms it turns
TORSION = (0, 1, 10, 11)
ACETYL = (11, 12, 13, 14, 15, 16)
ESTER = (1, 10, 11, 12)  # C2-O-C=O: about 180° in the training conformer (E ester)
SCAN_POINTS = 12
SCAN_SUBSTEPS = 3  # 10° turns between relaxations: a rigid 30° turn can put a methyl H on an O
SUBSTEP_FMAX = 0.05  # eV/Å
VIB_DELTA = 0.01  # Å


def relax(atoms: Atoms, make_calc: MakeCalc, fmax: float = RELAX_FMAX) -> Atoms:
    """A relaxed copy of ``atoms`` (BFGS to ``fmax``), with a calculator from ``make_calc``."""
    atoms = atoms.copy()
    atoms.calc = make_calc()
    BFGS(atoms, logfile=None).run(fmax=fmax, steps=3000)
    return atoms


def bond_lengths(atoms: Atoms) -> dict[str, float]:
    """Lengths (Å) of the bonds of ``BONDS``; a group of bonds gives its mean."""
    return {
        name: float(np.mean([atoms.get_distance(i, j) for i, j in pairs]))
        for name, pairs in BONDS.items()
    }


def harmonic_frequencies(relaxed: Atoms, make_calc: MakeCalc) -> np.ndarray:
    """The 3N - 6 harmonic frequencies (cm⁻¹, ascending) of a relaxed molecule.

    Central finite differences of the forces (``ase.vibrations``, ``VIB_DELTA``); the six modes
    of smallest magnitude (translations and rotations) are dropped; imaginary ones are negative.
    """
    atoms = relaxed.copy()
    atoms.calc = make_calc()
    with tempfile.TemporaryDirectory() as tmp:
        vib = Vibrations(atoms, name=str(Path(tmp) / "vib"), delta=VIB_DELTA, nfree=2)
        vib.run()
        frequencies = vib.get_frequencies()
    signed = np.where(np.abs(frequencies.imag) > 0, -np.abs(frequencies.imag), frequencies.real)
    internal = signed[np.argsort(np.abs(signed))][6:]
    return np.sort(internal)


def torsion_profile(relaxed: Atoms, make_calc: MakeCalc) -> tuple[np.ndarray, np.ndarray, list]:
    """Relaxed scan of the ring-ester torsion.

    ``SCAN_POINTS`` angles 0°, 30°, ... (the same for every method). From the grid angle nearest
    the relaxed molecule's the scan runs both ways round, half the circle each, in sub-steps of
    30°/``SCAN_SUBSTEPS``: each sub-step turns the acetoxy group rigidly from the previous
    geometry and relaxes it (BFGS, steps of at most 0.1 Å; to ``SUBSTEP_FMAX``, at grid angles to
    ``SCAN_FMAX``) with that dihedral and the ester's own O-C(=O) dihedral held
    (``FixInternals``), so that the ester stays in the conformer it was relaxed in (free, it
    turns to the other one on the way). A branch stops where a relaxation brings two atoms closer
    than the calculator allows.

    Returns
    -------
    angles : np.ndarray
        (SCAN_POINTS,) degrees.
    energies : np.ndarray
        (SCAN_POINTS,) eV above ``relaxed``; NaN where the branch stopped.
    geometries : list
        The relaxed ``Atoms`` at each angle (None where the branch stopped).
    """
    reference = relaxed.get_potential_energy()
    ester = relaxed.get_dihedral(*ESTER)
    mask = np.zeros(len(relaxed), dtype=bool)
    mask[list(ACETYL)] = True
    step = 360.0 / SCAN_POINTS
    first = int(round(relaxed.get_dihedral(*TORSION) / step))
    half = SCAN_POINTS // 2
    energies = np.full(SCAN_POINTS, np.nan)
    geometries: list = [None] * SCAN_POINTS
    for direction, count in ((1, half), (-1, SCAN_POINTS - half - 1)):
        atoms = relaxed.copy()
        current = relaxed.get_dihedral(*TORSION)
        targets = [
            (first + direction * k) * step for k in range(1 if direction < 0 else 0, count + 1)
        ]
        try:
            for target in targets:
                for unwrapped in np.linspace(current, target, SCAN_SUBSTEPS + 1)[1:]:
                    angle = unwrapped % 360.0
                    atoms.set_constraint()
                    atoms.set_dihedral(*TORSION, angle, mask=mask)
                    held = [[angle, list(TORSION)], [ester, list(ESTER)]]
                    atoms.set_constraint(FixInternals(dihedrals_deg=held))
                    atoms.calc = make_calc()
                    fmax = SCAN_FMAX if unwrapped == target else SUBSTEP_FMAX
                    BFGS(atoms, logfile=None, maxstep=0.1).run(fmax=fmax, steps=1000)
                current = target
                k = int(round(target / step)) % SCAN_POINTS
                energies[k] = atoms.get_potential_energy() - reference
                geometries[k] = atoms.copy()
        except InputError:  # the model collapsed two atoms: nothing further on this branch
            pass
    return np.arange(SCAN_POINTS) * step, energies, geometries


def conformer_energy(relaxed: Atoms, make_calc: MakeCalc, conformer: str) -> tuple[float, Atoms]:
    """Energy (eV) above ``relaxed`` and geometry of another conformer (``CONFORMERS``).

    The group is turned by 180° from ``relaxed`` and the molecule relaxed again (``RELAX_FMAX``).
    """
    indices, group = CONFORMERS[conformer]
    atoms = relaxed.copy()
    mask = np.zeros(len(atoms), dtype=bool)
    mask[list(group)] = True
    atoms.set_dihedral(*indices, atoms.get_dihedral(*indices) + 180.0, mask=mask)
    turned = relax(atoms, make_calc)
    return float(turned.get_potential_energy() - relaxed.get_potential_energy()), turned


def aspirin_properties(start: Atoms, make_calc: MakeCalc) -> dict[str, object]:
    """Relaxed bond lengths, harmonic frequencies, torsion profile and conformer energies.

    Returns
    -------
    dict
        ``relaxed`` (Atoms), ``bonds`` ({name: Å}), ``frequencies`` ((3N - 6,) cm⁻¹),
        ``scan_angles`` and ``scan_energies`` ((SCAN_POINTS,) degrees and eV),
        ``scan_geometries`` (Atoms or None each), ``conformers`` ({name: (eV, Atoms)}).
    """
    relaxed = relax(start, make_calc)
    angles, energies, geometries = torsion_profile(relaxed, make_calc)
    return {
        "relaxed": relaxed,
        "bonds": bond_lengths(relaxed),
        "frequencies": harmonic_frequencies(relaxed, make_calc),
        "scan_angles": angles,
        "scan_energies": energies,
        "scan_geometries": geometries,
        "conformers": {name: conformer_energy(relaxed, make_calc, name) for name in CONFORMERS},
    }


def aspirin_rows(model: MakeCalc) -> tuple[list[Row], list[str]]:
    """Rows, model against GFN2-xTB, and notes (frequency summary, torsion profile)."""
    start = start_geometry("aspirin")
    reference = aspirin_properties(start, calculator)
    predicted = aspirin_properties(start, model)
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
        "† the Z ester is the GFN2-xTB minimum; both turned conformers were starting points of the "
        "training MD (version 2; version 1 had visited the Z ester only at 1000 K, the turned carboxyl "
        "only at 750 and 1000 K).",
    ]
    return rows, notes


def scan_marks(reference: dict, predicted: dict, make_reference) -> list[str]:
    """Per scan point, "" or a ‡ note where the model's relaxation changed the covalent bond
    graph: the bonds that changed and the reference's energy (meV) of the model's geometry."""
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
        f"Torsion profile (ring-ester dihedral C1-C2-O-C(=O), relaxed scan, {len(e_ref)} points, "
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
