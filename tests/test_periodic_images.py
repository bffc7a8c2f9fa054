"""Periodic images: supercells, wrapping, cells smaller than the cutoff, lone atoms in a cell."""

import numpy as np
import pytest
from ase import Atoms
from conftest import F64_ATOL, GEOMETRIES, calc_for


@pytest.mark.parametrize("geometry", ["alloy", "triclinic", "tiny_cell", "slab"])
def test_supercell_energy_is_n_times(model, geometry):
    atoms = GEOMETRIES[geometry]()
    atoms.calc = calc_for(model)
    repeat = (2, 2, 2) if atoms.pbc.all() else (2, 2, 1)
    n = int(np.prod(repeat))
    supercell = atoms.repeat(repeat)
    supercell.calc = calc_for(model)
    energy = atoms.get_potential_energy()
    assert abs(supercell.get_potential_energy() - n * energy) < F64_ATOL * n * max(1, abs(energy))
    np.testing.assert_allclose(
        supercell.get_forces(), np.tile(atoms.get_forces(), (n, 1)), atol=1e-10
    )
    np.testing.assert_allclose(supercell.get_stress(), atoms.get_stress(), atol=1e-12)


@pytest.mark.parametrize("geometry", ["alloy", "triclinic", "slab"])
def test_wrapped_and_unwrapped_positions_agree(model, geometry):
    atoms = GEOMETRIES[geometry]()
    atoms.calc = calc_for(model)
    shifted = atoms.copy()
    shifts = np.random.default_rng(2).integers(-3, 4, size=(len(atoms), 3)) * atoms.pbc
    shifted.positions += shifts @ atoms.cell.array
    shifted.calc = calc_for(model)
    assert abs(shifted.get_potential_energy() - atoms.get_potential_energy()) < 1e-10
    np.testing.assert_allclose(shifted.get_forces(), atoms.get_forces(), atol=1e-10)
    np.testing.assert_allclose(shifted.get_stress(), atoms.get_stress(), atol=1e-12)


def test_single_atom_in_periodic_cell_sees_its_images(model):
    atoms = GEOMETRIES["tiny_cell"]()
    atoms.calc = calc_for(model)
    isolated = Atoms("Au")
    isolated.calc = calc_for(model)
    assert abs(atoms.get_potential_energy() - isolated.get_potential_energy()) > 1e-3
    np.testing.assert_allclose(atoms.get_forces(), 0.0, atol=1e-12)  # inversion symmetry
    assert np.isfinite(atoms.get_stress()).all()
