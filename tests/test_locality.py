"""Allegro is strictly local: E_i depends only on atoms within r_max of i."""

import numpy as np
from ase import Atoms
from conftest import F64_ATOL, GEOMETRIES, R_MAX, calc_for


def test_moving_a_distant_atom_leaves_local_energy_unchanged(model):
    positions = [[0, 0, 0], [2.1, 0.3, 0], [0.4, 2.2, 0.1], [R_MAX + 1.0, 0, 0]]
    atoms = Atoms("CuAuHCu", positions=positions)
    atoms.calc = calc_for(model)
    before = atoms.get_potential_energies()
    atoms.positions[3] += [0.3, -0.4, 0.5]  # stays farther than r_max from atom 0
    assert np.linalg.norm(atoms.positions[3]) > R_MAX
    after = atoms.get_potential_energies()
    assert after[0] == before[0]
    assert after[1] != before[1]  # atom 1 is within r_max of atom 3


def test_separated_clusters_energy_is_sum(model):
    first, second = GEOMETRIES["cluster"](4), GEOMETRIES["cluster"](9)
    second.positions += [40.0, 0, 0]
    both = first + second
    energies = []
    for atoms in (first, second, both):
        atoms.calc = calc_for(model)
        energies.append(atoms.get_potential_energy())
    assert abs(energies[2] - energies[0] - energies[1]) < F64_ATOL * abs(energies[2])
    forces = np.concatenate([first.get_forces(), second.get_forces()])
    np.testing.assert_allclose(both.get_forces(), forces, atol=1e-12)


def test_isolated_atom_energy_is_its_shift(model):
    shifts = dict(zip(model.type_names, model.scale_shift.shifts.tolist(), strict=True))
    for symbol, shift in shifts.items():
        atoms = Atoms(symbol)
        atoms.calc = calc_for(model)
        assert atoms.get_potential_energy() == shift
        np.testing.assert_array_equal(atoms.get_forces(), 0.0)


def test_per_atom_energies_sum_to_energy(model):
    for make in GEOMETRIES.values():
        atoms = make()
        atoms.calc = calc_for(model)
        assert abs(atoms.get_potential_energies().sum() - atoms.get_potential_energy()) < 1e-12
