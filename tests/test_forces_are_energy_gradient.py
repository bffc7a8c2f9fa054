"""Forces equal minus the energy gradient (central finite differences, float64)."""

import numpy as np
import pytest
from ase.calculators.fd import calculate_numerical_forces
from conftest import FORCE_FD_RTOL, GEOMETRIES, calc_for


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_forces_match_finite_differences(model, geometry):
    atoms = GEOMETRIES[geometry]()
    atoms.calc = calc_for(model)
    forces = atoms.get_forces()
    numerical = calculate_numerical_forces(atoms, eps=1e-4)
    scale = max(np.abs(forces).max(), 1e-3)
    assert np.abs(forces - numerical).max() <= FORCE_FD_RTOL * scale


def test_forces_sum_to_zero(model):
    atoms = GEOMETRIES["cluster"]()
    atoms.calc = calc_for(model)
    np.testing.assert_allclose(atoms.get_forces().sum(axis=0), 0.0, atol=1e-12)
