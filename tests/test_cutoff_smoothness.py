"""The energy is smooth and exactly flat at the cutoff; per-edge-type cutoffs are exact."""

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import R_MAX, calc_for, make_model

from allegro_ase.graph import edge_vectors
from allegro_ase.neighbors import neighbor_list

PAIRS = [("Cu", "Cu"), ("Cu", "Au"), ("Au", "H")]


def _dimer(model, first, second, distance):
    """Per-atom energies (eV) and forces (eV/Å) of a dimer along x."""
    atoms = Atoms([first, second], positions=[[0, 0, 0], [distance, 0, 0]])
    atoms.calc = calc_for(model)
    return atoms.get_potential_energies(), atoms.get_forces()


@pytest.mark.parametrize("pair", PAIRS)
def test_force_vanishes_at_and_beyond_cutoff(model, pair):
    cutoffs = model.cutoff_matrix
    i, j = (model.type_names.index(s) for s in pair)
    r_c = min(cutoffs[i, j].item(), cutoffs[j, i].item())
    r_far = max(cutoffs[i, j].item(), cutoffs[j, i].item())
    _, inside = _dimer(model, *pair, 0.5 * r_c)
    assert np.abs(inside).max() > 1e-6
    for distance in (r_far, r_far + 1e-9, 1.1 * R_MAX):
        _, forces = _dimer(model, *pair, distance)
        assert np.abs(forces).max() == 0.0


@pytest.mark.parametrize("pair", PAIRS)
def test_energy_continuous_across_cutoff(model, pair):
    """The centre atom's energy is continuous where its edge leaves the cutoff."""
    cutoffs = model.cutoff_matrix
    i, j = (model.type_names.index(s) for s in pair)
    for center, r_c in ((0, cutoffs[i, j].item()), (1, cutoffs[j, i].item())):
        below = _dimer(model, *pair, r_c - 1e-5)[0][center]
        above = _dimer(model, *pair, r_c + 1e-5)[0][center]
        assert abs(below - above) < 1e-10
    r_far = max(cutoffs[i, j].item(), cutoffs[j, i].item())
    below = _dimer(model, *pair, r_far - 1e-5)[0].sum()
    assert abs(below - _dimer(model, *pair, r_far + 1e-5)[0].sum()) < 1e-10


def test_force_is_smooth_approaching_cutoff(default_model):
    distances = np.linspace(R_MAX - 0.05, R_MAX - 1e-4, 6)
    forces = [np.abs(_dimer(default_model, "Cu", "Au", r)[1]).max() for r in distances]
    assert all(a >= b for a, b in zip(forces, forces[1:], strict=False))
    assert forces[-1] < 1e-12


def test_edge_type_cutoff_pruning_is_exact():
    """Dropping edges beyond their (asymmetric) pair cutoff changes nothing."""
    model = make_model(l_max=1, per_edge_type_cutoff={"Cu": {"Au": 2.9}, "Au": 3.4})
    rng = np.random.default_rng(8)
    atoms = Atoms("Cu5Au4H", positions=rng.random((10, 3)) * 5.0)
    atoms.calc = calc_for(model)
    pruned = atoms.get_potential_energy()
    edge_index, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, R_MAX)
    pos = torch.tensor(atoms.positions)
    vec = edge_vectors(
        pos, torch.zeros(3, 3, dtype=torch.float64), torch.tensor(edge_index), torch.tensor(shifts)
    )
    types = torch.tensor([model.type_names.index(s) for s in atoms.get_chemical_symbols()])
    unpruned = model(vec, torch.tensor(edge_index), types).sum().item()
    assert abs(pruned - unpruned) < 1e-12
    # the cutoff matrix is oriented row = centre type: the Cu->Au cutoff is 2.9, Au->Cu is 3.4
    names = model.type_names
    assert model.cutoff_matrix[names.index("Cu"), names.index("Au")] == 2.9
    assert model.cutoff_matrix[names.index("Au"), names.index("Cu")] == 3.4
