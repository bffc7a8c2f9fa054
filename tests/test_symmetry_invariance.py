"""Energy is invariant under rotation, translation and permutation; forces and stress rotate."""

import numpy as np
import pytest
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress
from conftest import F64_ATOL, GEOMETRIES, calc_for
from scipy.spatial.transform import Rotation


def _evaluate(model, atoms):
    atoms.calc = calc_for(model)
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    stress = atoms.get_stress() if atoms.pbc.any() else None
    return energy, forces, stress


@pytest.mark.parametrize("geometry", ["triclinic", "slab", "cluster"])
def test_energy_invariant_forces_stress_equivariant_under_rotation(model, geometry):
    atoms = GEOMETRIES[geometry]()
    energy, forces, stress = _evaluate(model, atoms.copy())
    rotation = Rotation.random(random_state=11).as_matrix()
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rotation.T
    rotated.cell = atoms.cell.array @ rotation.T
    energy_r, forces_r, stress_r = _evaluate(model, rotated)
    assert abs(energy_r - energy) < F64_ATOL * max(1, abs(energy))
    np.testing.assert_allclose(forces_r, forces @ rotation.T, atol=1e-10)
    if stress is not None:
        expected = rotation @ voigt_6_to_full_3x3_stress(stress) @ rotation.T
        np.testing.assert_allclose(stress_r, full_3x3_to_voigt_6_stress(expected), atol=1e-12)


def test_energy_invariant_under_reflection(model):
    atoms = GEOMETRIES["cluster"]()
    energy, forces, _ = _evaluate(model, atoms.copy())
    mirrored = atoms.copy()
    mirrored.positions[:, 0] *= -1
    energy_m, forces_m, _ = _evaluate(model, mirrored)
    assert abs(energy_m - energy) < F64_ATOL * max(1, abs(energy))
    np.testing.assert_allclose(forces_m, forces * [-1, 1, 1], atol=1e-10)


@pytest.mark.parametrize("geometry", ["triclinic", "cluster"])
def test_energy_invariant_under_translation(model, geometry):
    atoms = GEOMETRIES[geometry]()
    energy, forces, stress = _evaluate(model, atoms.copy())
    moved = atoms.copy()
    moved.positions += [3.3, -7.1, 12.9]
    energy_t, forces_t, stress_t = _evaluate(model, moved)
    assert abs(energy_t - energy) < F64_ATOL * max(1, abs(energy))
    np.testing.assert_allclose(forces_t, forces, atol=1e-10)
    if stress is not None:
        np.testing.assert_allclose(stress_t, stress, atol=1e-12)


@pytest.mark.parametrize("geometry", ["alloy", "cluster"])
def test_energy_invariant_under_permutation(model, geometry):
    atoms = GEOMETRIES[geometry]()
    energy, forces, _ = _evaluate(model, atoms.copy())
    order = np.random.default_rng(5).permutation(len(atoms))
    permuted = atoms[order]
    energy_p, forces_p, _ = _evaluate(model, permuted)
    assert abs(energy_p - energy) < F64_ATOL * max(1, abs(energy))
    np.testing.assert_allclose(forces_p, forces[order], atol=1e-10)


def test_energy_independent_of_edge_order(model):
    """The model sums over edges: shuffling the edge list changes nothing."""
    import torch

    from allegro_ase.conversion import SpeciesMap, atoms_to_graph
    from allegro_ase.outputs import compute_outputs

    atoms = GEOMETRIES["alloy"]()
    graph = atoms_to_graph(atoms, SpeciesMap(model.type_names), model.r_max, model.cutoff_matrix)
    order = torch.from_numpy(np.random.default_rng(3).permutation(graph.num_edges))
    shuffled = type(graph)(
        graph.pos,
        graph.atom_types,
        graph.cell,
        graph.edge_index[:, order],
        graph.cell_shifts[order],
    )
    expected, found = compute_outputs(model, graph), compute_outputs(model, shuffled)
    assert abs(found.energy.item() - expected.energy.item()) < 1e-12
    torch.testing.assert_close(found.forces, expected.forces, atol=1e-12, rtol=0)
