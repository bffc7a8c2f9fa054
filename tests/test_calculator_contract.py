"""The calculator follows ASE's conventions: properties, caching, copies, optimisers."""

import copy

import numpy as np
import pytest
from ase.calculators.calculator import BaseCalculator, Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from conftest import GEOMETRIES, calc_for


def test_implemented_properties_are_declared_without_touching_ase(default_model):
    before = list(BaseCalculator.implemented_properties), list(Calculator.implemented_properties)
    calc = calc_for(default_model)
    assert calc.implemented_properties == (
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
        "stresses",
    )
    assert (
        list(BaseCalculator.implemented_properties),
        list(Calculator.implemented_properties),
    ) == before


def test_result_shapes_and_free_energy(default_model):
    atoms = GEOMETRIES["alloy"]()
    atoms.calc = calc_for(default_model)
    assert atoms.get_potential_energy(force_consistent=True) == atoms.get_potential_energy()
    assert atoms.get_potential_energies().shape == (len(atoms),)
    assert atoms.get_forces().shape == (len(atoms), 3)
    assert atoms.get_stress().shape == (6,)
    assert atoms.get_stress(voigt=False).shape == (3, 3)


class CountingModel:
    """Wrap a model and count forward calls."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, *args):
        self.calls += 1
        return self.model(*args)


def test_results_are_cached_until_atoms_change(default_model):
    atoms = GEOMETRIES["triclinic"]()
    calc = calc_for(default_model, compile=False)  # counts the eager model's calls
    counter = CountingModel(calc.model)
    calc.model = counter  # instance attribute: the counted call path is the real one
    calc.model.type_names, calc.model.r_max = default_model.type_names, default_model.r_max
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    atoms.get_forces(), atoms.get_stress(), atoms.get_potential_energies()
    assert counter.calls == 1
    atoms.positions[0, 0] += 1e-3
    assert atoms.get_potential_energy() != energy
    assert counter.calls == 2
    atoms.numbers[0] = 79
    atoms.get_forces()
    assert counter.calls == 3
    atoms.cell[0, 0] += 0.01
    atoms.get_stress()
    assert counter.calls == 4


def test_copies_share_the_model_but_not_results(default_model):
    calc = calc_for(default_model)
    first, second = GEOMETRIES["alloy"](), GEOMETRIES["alloy"](seed=1)
    first.calc = calc
    e1 = first.get_potential_energy()
    twin = copy.copy(calc)
    assert twin.model is calc.model
    second.calc = twin
    e2 = second.get_potential_energy()
    assert e1 != e2 and first.get_potential_energy() == e1
    assert calc.results is not twin.results


@pytest.mark.usefixtures("numpy_global_rng_restored")
def test_relaxes_with_cell_filter(default_model):
    atoms = GEOMETRIES["alloy"]()
    atoms.calc = calc_for(default_model)
    start = atoms.get_potential_energy()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=0.05, steps=60)
    assert atoms.get_potential_energy() < start
    assert np.abs(atoms.get_forces()).max() < 0.2


@pytest.mark.parametrize("backend", ["matscipy", "vesin"])
def test_backends_give_identical_results(default_model, backend):
    atoms = GEOMETRIES["slab"]()
    atoms.calc = calc_for(default_model)
    reference = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = calc_for(default_model, neighbor_list=backend)
    assert abs(atoms.get_potential_energy() - reference[0]) < 1e-12
    np.testing.assert_allclose(atoms.get_forces(), reference[1], atol=1e-12)
