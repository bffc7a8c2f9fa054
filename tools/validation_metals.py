"""Properties of fcc metals from any ASE calculator: the metals rows of ``tools/validate_model.py``.

Every function takes ``make_calc``, a callable that returns a fresh calculator (``EMT`` itself, or
copies of one shared ``AllegroCalculator``), so the reference method and a model run exactly the
same protocol. Each method is evaluated at its own lattice constant ``a0``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from ase.optimize import BFGS
from ase.phonons import Phonons

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tools"))
from check_barriers import PROCESSES  # noqa: E402
from make_emt_dataset import emt_lattice_constant  # noqa: E402
from neb_au_on_al100 import neb_barrier  # noqa: E402
from validation_report import Row, summary  # noqa: E402

MakeCalc = Callable[[], object]
METALS = ("Al", "Cu", "Ag", "Au")
J_PER_M2 = units.J / units.m**2  # eV/Å² in one J/m²
EV_TO_THZ = units._e / units._hplanck / 1e12  # frequency (THz) of a quantum of one eV
ELASTIC_STRAIN = 0.005  # ± strain of the finite differences for C11, C12, C44
SURFACE_LAYERS = 7
SURFACE_VACUUM = 7.5  # Å on each side
PHONON_SUPERCELL = 4  # n x n x n primitive cells: X and L are commensurate for even n
PHONON_DELTA = 0.01  # Å
FMAX = 0.01  # eV/Å, relaxations of slabs
NEB_FMAX = 0.02  # eV/Å, vacancy endpoints and NEB


def equation_of_state(element: str, make_calc: MakeCalc) -> tuple[float, float, float]:
    """Equilibrium lattice constant and bulk modulus of the fcc crystal.

    Birch-Murnaghan fit of E(V) of the one-atom primitive cell at 9 volumes within ±3 % of EMT's
    equilibrium volume.

    Returns
    -------
    a0 : float
        Cubic lattice constant (Å).
    bulk_modulus : float
        GPa.
    energy : float
        Energy per atom at ``a0`` (eV).
    """
    atoms = bulk(element, "fcc", a=emt_lattice_constant(element))
    atoms.calc = make_calc()
    cell = atoms.cell.copy()
    volumes, energies = [], []
    for scale in np.linspace(0.97, 1.03, 9) ** (1 / 3):
        atoms.set_cell(cell * scale, scale_atoms=True)
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    v0, _, b0 = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    a0 = float((4 * v0) ** (1 / 3))
    return a0, float(b0 / units.GPa), bulk_energy(element, a0, make_calc)


def bulk_energy(element: str, a0: float, make_calc: MakeCalc) -> float:
    """Energy per atom (eV) of the fcc crystal with lattice constant ``a0`` (Å)."""
    atoms = bulk(element, "fcc", a=a0)
    atoms.calc = make_calc()
    return float(atoms.get_potential_energy())


def cubic_elastic_constants(
    element: str, a0: float, make_calc: MakeCalc, strain: float = ELASTIC_STRAIN
) -> tuple[float, float, float]:
    r"""C11, C12 and C44 (GPa) from the stress of the strained conventional cell.

    Central differences of the stress (ASE sign, positive = tensile) in the applied strain:
    :math:`C_{11} = \partial\sigma_{xx}/\partial\varepsilon_{xx}`,
    :math:`C_{12} = \partial\sigma_{yy}/\partial\varepsilon_{xx}`,
    :math:`C_{44} = \partial\sigma_{yz}/\partial\gamma_{yz}` with :math:`\gamma_{yz} = 2\varepsilon_{yz}`.
    Every atom of fcc is a centre of inversion, so these strains need no internal relaxation.
    """
    atoms = bulk(element, "fcc", a=a0, cubic=True)
    calc = make_calc()

    def stress(epsilon: np.ndarray) -> np.ndarray:
        strained = atoms.copy()
        strained.set_cell(atoms.cell[:] @ (np.eye(3) + epsilon), scale_atoms=True)
        strained.calc = calc
        return strained.get_stress(voigt=True)

    normal = np.zeros((3, 3))
    normal[0, 0] = strain
    shear = np.zeros((3, 3))
    shear[1, 2] = shear[2, 1] = strain / 2
    d_normal = (stress(normal) - stress(-normal)) / (2 * strain) / units.GPa
    d_shear = (stress(shear) - stress(-shear)) / (2 * strain) / units.GPa
    return float(d_normal[0]), float(d_normal[1]), float(d_shear[3])


def surface_energy(
    element: str, a0: float, energy_per_atom: float, make_calc: MakeCalc, facet: str
) -> float:
    r"""Relaxed surface energy (J/m²) of the (100) or (111) facet.

    :math:`\gamma = (E_\mathrm{slab} - N e_\mathrm{bulk}) / 2A` for a 1x1 slab of
    ``SURFACE_LAYERS`` layers, all atoms relaxed (BFGS, ``FMAX``), pbc (T, T, F).
    """
    build = {"100": fcc100, "111": fcc111}[facet]
    slab = build(element, size=(1, 1, SURFACE_LAYERS), a=a0, vacuum=SURFACE_VACUUM)
    slab.calc = make_calc()
    BFGS(slab, logfile=None).run(fmax=FMAX, steps=300)
    area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
    excess = slab.get_potential_energy() - len(slab) * energy_per_atom
    return float(excess / (2 * area) / J_PER_M2)


def vacancy_energies(
    element: str, a0: float, energy_per_atom: float, make_calc: MakeCalc
) -> tuple[float, float]:
    """Vacancy formation energy and migration barrier (eV) in a 2x2x2 cubic cell (31 atoms).

    Formation: relaxed vacancy cell minus 31 bulk atoms, at fixed ``a0``. Migration: a nearest
    neighbour jumps into the vacancy; both ends relaxed, NEB with 3 images, climbing image,
    improved tangent (``examples/neb_au_on_al100.neb_barrier``).
    """
    initial = bulk(element, "fcc", a=a0, cubic=True) * 2
    del initial[0]
    neighbour = int(np.argmin(np.linalg.norm(initial.positions, axis=1)))  # at a0/√2 from 0
    final = initial.copy()
    final.positions[neighbour] = 0.0
    barrier = neb_barrier(initial, final, make_calc, n_images=3, fmax=NEB_FMAX, climb=True)
    formation = initial.get_potential_energy() - len(initial) * energy_per_atom  # relaxed in place
    return float(formation), float(barrier)


def phonon_frequencies(element: str, a0: float, make_calc: MakeCalc) -> dict[str, float]:
    """Phonon frequencies (THz) at X and L: transverse (twofold) and longitudinal acoustic.

    Finite displacements (``PHONON_DELTA``) in a ``PHONON_SUPERCELL``³ supercell of the primitive
    cell (``ase.phonons``, acoustic sum rule imposed); X and L are commensurate with it.
    """
    atoms = bulk(element, "fcc", a=a0)
    points = atoms.cell.bandpath().special_points
    with tempfile.TemporaryDirectory() as tmp:
        phonons = Phonons(
            atoms,
            make_calc(),
            supercell=(PHONON_SUPERCELL,) * 3,
            delta=PHONON_DELTA,
            name=str(Path(tmp) / "phonon"),
        )
        phonons.run()
        phonons.read(acoustic=True)
        energies = phonons.band_structure([points["X"], points["L"]], verbose=False)
    thz = np.sort(np.asarray(energies).real, axis=1) * EV_TO_THZ
    return {"X TA": thz[0, 0], "X LA": thz[0, 2], "L TA": thz[1, 0], "L LA": thz[1, 2]}


def element_properties(element: str, make_calc: MakeCalc) -> dict[str, float]:
    """Every property of one element (keys are the table's row labels with units)."""
    a0, bulk_modulus, energy = equation_of_state(element, make_calc)
    c11, c12, c44 = cubic_elastic_constants(element, a0, make_calc)
    formation, migration = vacancy_energies(element, a0, energy, make_calc)
    values = {
        "lattice constant (Å)": a0,
        "bulk modulus (GPa)": bulk_modulus,
        "C11 (GPa)": c11,
        "C12 (GPa)": c12,
        "C44 (GPa)": c44,
        "surface energy (100) (J/m²)": surface_energy(element, a0, energy, make_calc, "100"),
        "surface energy (111) (J/m²)": surface_energy(element, a0, energy, make_calc, "111"),
        "vacancy formation (eV)": formation,
        "vacancy migration, NEB (eV)": migration,
    }
    for point, frequency in phonon_frequencies(element, a0, make_calc).items():
        values[f"phonon {point} (THz)"] = frequency
    return values


def metals_rows(model: MakeCalc, hop_in_data: bool) -> tuple[list[Row], list[str]]:
    """Rows of every element and the Au hop on Al(100), model against EMT, and notes.

    ``hop_in_data``: whether the model's training data hold adatom hop paths (then the hop row
    is not marked as a transfer test).
    """
    rows = []
    for element in METALS:
        reference, predicted = element_properties(element, EMT), element_properties(element, model)
        for quantity, value in reference.items():
            transfer = quantity.startswith("vacancy migration")
            rows.append(Row(element, quantity, value, predicted[quantity], transfer))
    make_endpoints, options = PROCESSES["Au hop on Al(100)"]
    hop = [neb_barrier(*make_endpoints(), make, **options) for make in (EMT, model)]
    rows.append(
        Row("Au on Al(100)", "adatom hop barrier, NEB (eV)", *hop, transfer=not hop_in_data)
    )
    notes = [
        summary(rows),
        "† a process whose transition state is not in the training data: vacancy jumps "
        + (
            "(the hop row's paths are in the data, on a 3×3×4 slab)."
            if hop_in_data
            else "and the adatom hop."
        ),
    ]
    return rows, notes
