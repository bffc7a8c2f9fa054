"""Receptive fields: Allegro is strictly local (E_i depends only on atoms within r_max of i);
NequIP sees atoms within num_layers hops of length below r_max, so within num_layers * r_max.
"""

import numpy as np
from ase import Atoms
from conftest import F64_ATOL, GEOMETRIES, R_MAX, calc_for, receptive_hops


def test_moving_a_distant_atom_leaves_local_energy_unchanged(allegro_model):
    model = allegro_model
    positions = [[0, 0, 0], [2.1, 0.3, 0], [0.4, 2.2, 0.1], [R_MAX + 1.0, 0, 0]]
    atoms = Atoms("CuAuHCu", positions=positions)
    atoms.calc = calc_for(model)
    before = atoms.get_potential_energies()
    atoms.positions[3] += [0.3, -0.4, 0.5]  # stays farther than r_max from atom 0
    assert np.linalg.norm(atoms.positions[3]) > R_MAX
    after = atoms.get_potential_energies()
    assert after[0] == before[0]
    assert after[1] != before[1]  # atom 1 is within r_max of atom 3


def test_receptive_field_is_hops_times_r_max(model):
    """In a Cu chain with spacing 0.8 r_max, atom k is exactly k hops from atom 0.

    Atom ``hops`` (within hops * r_max) changes E_0; atom ``hops + 1`` (beyond it) does not.
    """
    hops = receptive_hops(model)
    assert 0.8 * (hops + 1) > hops  # the chain below needs hops < 4
    spacing = 0.8 * R_MAX
    atoms = Atoms(f"Cu{hops + 2}", positions=[[k * spacing, 0, 0] for k in range(hops + 2)])
    atoms.calc = calc_for(model)
    before = atoms.get_potential_energies()
    for moved, changes in ((hops + 1, False), (hops, True)):
        shifted = atoms.copy()
        shifted.positions[moved] += [0.05, 0.3, -0.2]
        assert (np.linalg.norm(shifted.positions[moved]) > hops * R_MAX) != changes
        shifted.calc = calc_for(model)
        after = shifted.get_potential_energies()
        assert (after[0] != before[0]) == changes
        assert after[moved - 1] != before[moved - 1]  # its direct neighbour always feels it


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
