"""What LAMMPS reads from us, checked without LAMMPS: data files, input lines, unit conversion.

LAMMPS numbers atom types 1, 2, ... and ``pair_coeff * * FILE name1 name2 ...`` gives the model
type name of each; a data file whose type numbering differs from that line runs without a
word and computes the wrong alloy. These tests read the data files back and check the type of
every atom, for ASE's writer (as docs/lammps.md uses it) and for ``tools/compare_lammps.py``'s.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.data import atomic_masses, atomic_numbers
from ase.io import read, write

from allegro_ase import AllegroCalculator, AllegroConfig, AllegroModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import compare_lammps  # noqa: E402  (tools/compare_lammps.py)

TYPE_NAMES = ["Al", "Cu", "Ag", "Au"]  # allegro-emt-metals' order, not alphabetical


def cu3au() -> object:
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True) * (2, 2, 2)
    atoms.numbers[::4] = 79
    atoms.rattle(0.05, seed=0)
    return atoms


def data_file_masses(path: Path) -> dict[int, float]:
    """The ``Masses`` section of a LAMMPS data file: {type: mass}."""
    lines = path.read_text().splitlines()
    start = lines.index("Masses") + 2
    masses = {}
    for line in lines[start:]:
        if not line.strip():
            break
        fields = line.split()
        masses[int(fields[0])] = float(fields[1])
    return masses


def test_ase_data_file_with_specorder_numbers_types_in_pair_coeff_order(tmp_path):
    atoms = cu3au()
    path = tmp_path / "system.data"
    write(path, atoms, format="lammps-data", specorder=TYPE_NAMES, masses=True, units="metal")
    written = read(path, format="lammps-data", units="metal")
    assert [TYPE_NAMES[t - 1] for t in written.arrays["type"]] == atoms.get_chemical_symbols()
    assert np.allclose(written.positions, atoms.positions, atol=1e-10)
    masses = data_file_masses(path)
    assert sorted(masses) == [1, 2, 3, 4]  # absent types too: one pair_coeff line for all
    for k, name in enumerate(TYPE_NAMES, start=1):
        assert masses[k] == pytest.approx(atomic_masses[atomic_numbers[name]])


def test_ase_data_file_without_specorder_numbers_types_alphabetically(tmp_path):
    """The pitfall docs/lammps.md warns about: Au becomes type 1, Cu type 2, and no masses."""
    atoms = cu3au()
    path = tmp_path / "plain.data"
    write(path, atoms, format="lammps-data", units="metal")
    text = path.read_text()
    assert "Masses" not in text
    types = read(path, format="lammps-data", units="metal").arrays["type"]
    assert set(types[atoms.numbers == 79]) == {1} and set(types[atoms.numbers == 29]) == {2}


@pytest.mark.parametrize("name", ["alloy", "triclinic", "slab"])
def test_compare_lammps_data_file_round_trips(tmp_path, name):
    atoms = compare_lammps.structures()[name]
    path = tmp_path / f"{name}.data"
    compare_lammps.write_data(atoms, path)
    written = read(path, format="lammps-data", units="metal")
    species = compare_lammps.SPECIES
    assert [species[t - 1] for t in written.arrays["type"]] == atoms.get_chemical_symbols()
    assert np.allclose(written.positions, atoms.positions, rtol=0, atol=1e-12)
    assert np.allclose(written.cell.array, atoms.cell.array, atol=1e-12)
    for k, symbol in enumerate(species, start=1):
        assert data_file_masses(path)[k] == pytest.approx(atomic_masses[atomic_numbers[symbol]])


def test_compare_lammps_data_file_refuses_a_cell_lammps_cannot_take(tmp_path):
    atoms = cu3au()
    atoms.set_cell(atoms.cell.array @ np.array([[0.8, 0.6, 0], [-0.6, 0.8, 0], [0, 0, 1]]))
    with pytest.raises(AssertionError, match="rotate the cell"):
        compare_lammps.write_data(atoms, tmp_path / "rotated.data")


@pytest.mark.parametrize(("architecture", "newton"), [("allegro", "on"), ("nequip", "off")])
def test_compare_lammps_input_names_the_types_in_model_order(architecture, newton):
    pair_style, newton_setting, _ = compare_lammps.PAIR_STYLES[architecture]
    assert (pair_style, newton_setting) == (architecture, newton)
    text = compare_lammps.INPUT.format(
        boundary="p p f", newton=newton_setting, data="system.data", pair_style=pair_style,
        model="m.nequip.pt2", species=" ".join(TYPE_NAMES), thermo=10, dynamics="",
        steps=0, dump_every=1,
    )  # fmt: skip
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    assert lines["units"] == ["metal"]
    assert lines["newton"] == [newton]
    assert lines["boundary"] == ["p", "p", "f"]
    assert lines["pair_coeff"] == ["*", "*", "m.nequip.pt2", *TYPE_NAMES]


def test_lammps_pressure_converts_to_ase_stress():
    """compare_lammps.compare on LAMMPS-convention numbers made from our own results gives 0.

    LAMMPS: pressure in bar, positive under compression, order pxx pyy pzz pxy pxz pyz;
    ASE: stress in eV/Å³, positive under tension, Voigt order xx yy zz yz xz xy.
    """
    model = AllegroModel(
        AllegroConfig(type_names=["Cu", "Au"], r_max=4.0, l_max=1, avg_num_neighbors=12.0,
                      num_scalar_features=8, num_tensor_features=4, model_dtype="float64")
    )  # fmt: skip
    atoms = cu3au()
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0, 0], [0.1, 1, 0], [0.05, -0.1, 1]]))
    atoms.calc = AllegroCalculator(model, device="cpu")
    stress = atoms.get_stress()
    xx, yy, zz, yz, xz, xy = stress
    pressure = -np.array([xx, yy, zz, xy, xz, yz]) * compare_lammps.NKTV2P
    energy = atoms.get_potential_energy()
    table = np.column_stack(
        [np.arange(1, len(atoms) + 1), np.ones(len(atoms)), atoms.positions,
         atoms.get_forces(), atoms.get_potential_energies()]
    )  # fmt: skip
    lammps = {"thermo": np.array([[0, energy, 0.0, energy, *pressure]]), "atoms": table}
    differences = compare_lammps.compare(model, atoms, lammps)
    assert max(differences[key] for key in ("energy", "energies", "forces")) < 1e-12
    assert differences["stress"] < 1e-12 * max(1.0, np.abs(stress).max())
    assert np.abs(stress[3:]).min() > 1e-6  # the off-diagonal order was put to the test
