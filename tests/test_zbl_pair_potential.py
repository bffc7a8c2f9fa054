"""The ZBL pair term: the universal screened Coulomb repulsion, in models and on its own."""

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import make_model, make_nequip_model

from allegro_ase import AllegroCalculator
from allegro_ase.io import load_model, save_model
from allegro_ase.nn.pair_potential import ZBL
from allegro_ase.nn.radial import PolynomialCutoff

F64_ATOL = 1e-12


def zbl_dimer_energy(z_i: int, z_j: int, r: float, r_c: float, p: float = 6.0) -> float:
    """E(r) of an isolated pair from the LAMMPS pair_zbl formula, times the envelope (eV)."""
    x = (z_i**0.23 + z_j**0.23) * r / 0.46850
    phi = (
        0.18175 * np.exp(-3.19980 * x)
        + 0.50986 * np.exp(-0.94229 * x)
        + 0.28022 * np.exp(-0.40290 * x)
        + 0.02817 * np.exp(-0.20162 * x)
    )
    u = r / r_c
    envelope = (
        1
        - (p + 1) * (p + 2) / 2 * u**p
        + p * (p + 2) * u ** (p + 1)
        - p * (p + 1) / 2 * u ** (p + 2)
    )
    return 14.399645 * z_i * z_j / r * phi * envelope


@pytest.mark.parametrize("r", [0.3, 0.8, 1.5, 2.9])
def test_dimer_energy_is_the_lammps_formula_split_between_the_atoms(r):
    zbl = ZBL(["Cu", "Au"], "metal", 6.0, torch.float64)
    length = torch.tensor([r, r], dtype=torch.float64)
    edge_types = torch.tensor([[0, 1], [1, 0]])
    energies = zbl(length, length / 4.0, edge_types, torch.tensor([0, 1]), 2)
    expected = zbl_dimer_energy(29, 79, r, 4.0)
    assert energies.sum().item() == pytest.approx(expected, rel=1e-13)
    assert energies[0].item() == pytest.approx(expected / 2, rel=1e-13)


def test_real_units_scale_by_the_coulomb_constant():
    length = torch.tensor([1.0], dtype=torch.float64)
    args = (length, length / 5.0, torch.tensor([[0], [0]]), torch.tensor([0]), 1)
    metal = ZBL(["O"], "metal")(*args)
    real = ZBL(["O"], "real")(*args)
    assert (real / metal).item() == pytest.approx(332.06371 / 14.399645, rel=1e-14)


def test_envelope_vanishes_with_its_derivatives_at_the_cutoff():
    x = torch.tensor([1.0 - 1e-6, 1.0, 1.2], dtype=torch.float64, requires_grad=True)
    u = PolynomialCutoff(6.0)(x)
    (grad,) = torch.autograd.grad(u.sum(), x)
    assert u[1:].abs().max().item() == 0.0 and grad[1:].abs().max().item() == 0.0
    assert abs(u[0].item()) < 1e-13  # (1e-6)^6 analytically; float64 cancellation


@pytest.mark.parametrize("builder", [make_model, make_nequip_model], ids=["allegro", "nequip"])
def test_zbl_makes_close_contact_repulsive(builder):
    """Energy rises and the force pushes the atoms apart all the way down to 0.3 Å."""
    calc = AllegroCalculator(builder(pair_potential="zbl").requires_grad_(False), device="cpu")
    energies, forces = [], []
    for r in np.linspace(0.3, 1.6, 27):
        atoms = Atoms("CuAu", positions=[[0, 0, 0], [0, 0, r]])
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces()[1, 2])  # on the upper atom, along +z
    assert np.all(np.diff(energies) < 0), "energy must fall as the pair separates"
    assert np.all(np.array(forces) > 0), "the force must push the atoms apart"


def test_zbl_model_saves_and_loads_with_its_pair_term(tmp_path):
    model = make_model(pair_potential={"kind": "zbl", "units": "metal", "polynomial_cutoff_p": 5})
    save_model(model, tmp_path / "zbl.pt")
    loaded = load_model(tmp_path / "zbl.pt")
    assert loaded.config.pair_potential == model.config.pair_potential
    atoms = Atoms("CuAuH", positions=[[0, 0, 0], [0, 0, 0.9], [0.8, 0, 0.4]])
    results = []
    for m in (model, loaded):
        atoms.calc = AllegroCalculator(m, device="cpu")
        results.append((atoms.get_potential_energy(), atoms.get_forces()))
    assert results[0][0] == pytest.approx(results[1][0], abs=F64_ATOL)
    np.testing.assert_allclose(results[0][1], results[1][1], atol=F64_ATOL)


def test_pair_potential_settings_are_checked():
    with pytest.raises(ValueError, match="only pair_potential is 'zbl'"):
        make_model(pair_potential="lj")
    with pytest.raises(ValueError, match="units must be one of"):
        make_model(pair_potential={"units": "si"})
    with pytest.raises(ValueError, match=r"not chemical symbols.*chemical_species"):
        make_model(
            type_names=["A", "B", "C"],
            pair_potential="zbl",
            per_type_energy_scales=1.0,
            per_type_energy_shifts=0.0,
        )
    model = make_model(
        type_names=["A", "B", "C"], per_type_energy_scales=1.0, per_type_energy_shifts=0.0,
        pair_potential={"chemical_species": ["Cu", "Au", "H"]},
    )  # fmt: skip
    assert model.pair_potential.atomic_numbers.tolist() == [29, 79, 1]
