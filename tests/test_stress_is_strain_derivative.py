"""Stress equals the finite-strain derivative of the energy; per-atom stresses sum to it."""

import numpy as np
import pytest
from ase.calculators.fd import calculate_numerical_stress
from conftest import GEOMETRIES, PERIODIC_GEOMETRIES, STRESS_FD_ATOL, calc_for


@pytest.mark.parametrize("geometry", PERIODIC_GEOMETRIES)
def test_stress_matches_finite_strain(model, geometry):
    atoms = GEOMETRIES[geometry]()
    atoms.calc = calc_for(model)
    stress = atoms.get_stress()
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    assert np.abs(stress - numerical).max() <= STRESS_FD_ATOL


@pytest.mark.parametrize("geometry", PERIODIC_GEOMETRIES)
def test_per_atom_stresses_sum_to_stress(model, geometry):
    atoms = GEOMETRIES[geometry]()
    atoms.calc = calc_for(model)
    stresses = atoms.get_stresses()
    assert stresses.shape == (len(atoms), 6)
    np.testing.assert_allclose(stresses.sum(axis=0), atoms.get_stress(), rtol=0, atol=1e-14)


def test_stress_3x3_is_symmetric(default_model):
    atoms = GEOMETRIES["triclinic"]()
    atoms.calc = calc_for(default_model)
    full = atoms.get_stress(voigt=False)
    np.testing.assert_allclose(full, full.T, atol=1e-15)
