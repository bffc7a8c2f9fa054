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


# --- the ZBL term's own cutoff (pair_potential r_max) ---


@pytest.mark.parametrize("r", [0.3, 0.8, 1.5, 1.99])
def test_own_cutoff_replaces_a_longer_edge_type_cutoff(r):
    """With r_max = 2 Å and a 4 Å edge cutoff the envelope is u(r / 2 Å)."""
    zbl = ZBL(["Cu", "Au"], "metal", 6.0, torch.float64, r_max=2.0)
    length = torch.tensor([r, r], dtype=torch.float64)
    edge_types = torch.tensor([[0, 1], [1, 0]])
    energies = zbl(length, length / 4.0, edge_types, torch.tensor([0, 1]), 2)
    assert energies.sum().item() == pytest.approx(zbl_dimer_energy(29, 79, r, 2.0), rel=1e-13)


def test_shorter_edge_type_cutoff_still_wins():
    """r_max = 3 Å but the edge type ends at 1.5 Å: the envelope is u(r / 1.5 Å)."""
    zbl = ZBL(["Cu"], "metal", 6.0, torch.float64, r_max=3.0)
    length = torch.tensor([1.2], dtype=torch.float64)
    energy = zbl(length, length / 1.5, torch.tensor([[0], [0]]), torch.tensor([0]), 1)
    assert energy.item() == pytest.approx(zbl_dimer_energy(29, 29, 1.2, 1.5) / 2, rel=1e-13)


def test_own_cutoff_leaves_longer_pairs_untouched():
    """Every distance beyond r_max: the model with ZBL gives the energy of the model without."""
    plain = make_model()
    with_zbl = make_model(pair_potential={"kind": "zbl", "r_max": 1.8})
    atoms = Atoms("CuAuH", positions=[[0, 0, 0], [0, 0, 1.85], [1.9, 0, 0.4]])
    results = []
    for model in (plain, with_zbl):
        atoms.calc = AllegroCalculator(model, device="cpu")
        results.append((atoms.get_potential_energy(), atoms.get_forces()))
    assert results[0][0] == pytest.approx(results[1][0], abs=F64_ATOL)
    np.testing.assert_allclose(results[0][1], results[1][1], atol=F64_ATOL)
    atoms.positions[1, 2] = 1.5  # now inside: the term is there
    energies = []
    for model in (plain, with_zbl):
        atoms.calc = AllegroCalculator(model, device="cpu")
        energies.append(atoms.get_potential_energy())
    assert energies[1] - energies[0] > 1.0


@pytest.mark.parametrize("builder", [make_model, make_nequip_model], ids=["allegro", "nequip"])
def test_force_is_continuous_through_the_own_cutoff(builder):
    """Force on a Cu-Au pair as it crosses r_max = 2 Å: equal to the plain model's at and beyond."""
    pair = {"kind": "zbl", "r_max": 2.0}
    with_zbl = AllegroCalculator(builder(pair_potential=pair), device="cpu")
    plain = AllegroCalculator(builder(), device="cpu")
    differences = []
    for r in (1.9, 1.999, 2.0, 2.001):
        forces = []
        for calc in (with_zbl, plain):
            atoms = Atoms("CuAu", positions=[[0, 0, 0], [0, 0, r]])
            atoms.calc = calc
            forces.append(atoms.get_forces()[1, 2])
        differences.append(abs(forces[0] - forces[1]))
    assert differences[0] > 1e-3  # the term acts inside
    assert differences[1] < 1e-3 * differences[0]  # fades out: u'(x) ~ (1 - x)^2 at p = 6
    assert max(differences[2:]) < F64_ATOL


def test_own_cutoff_saves_and_loads(tmp_path):
    model = make_model(pair_potential={"kind": "zbl", "r_max": 2})
    assert model.config.pair_potential["r_max"] == 2.0
    save_model(model, tmp_path / "zbl.pt")
    loaded = load_model(tmp_path / "zbl.pt")
    assert loaded.config.pair_potential == model.config.pair_potential
    assert loaded.pair_potential.r_max == 2.0


def test_default_cutoff_is_the_edge_type_cutoff():
    """Without r_max the setting and the numbers are those of the reference framework."""
    model = make_model(pair_potential="zbl")
    assert model.config.pair_potential["r_max"] is None and model.pair_potential.r_max is None


@pytest.mark.parametrize(
    "value, message",
    [(-1.0, "must be positive"), (0, "must be positive"), ("2 Å", "a cutoff in Å or None")],
)
def test_own_cutoff_setting_is_checked(value, message):
    with pytest.raises(ValueError, match=message):
        make_model(pair_potential={"kind": "zbl", "r_max": value})


def test_exported_program_keeps_the_own_cutoff():
    """torch.export traces the shorter cutoff: the program gives the eager numbers, pair inside."""
    from conftest import alloy

    from allegro_ase.conversion import SpeciesMap, atoms_to_graph
    from allegro_ase.io.export import export_program, exportable
    from allegro_ase.io.targets import TargetModule, target_inputs

    model = make_model(pair_potential={"kind": "zbl", "r_max": 2.0}).requires_grad_(False)
    program = export_program(model, "ase").module()
    eager = TargetModule(exportable(model), "ase")
    atoms = alloy()
    atoms.positions[1] = atoms.positions[0] + [0.0, 0.0, 1.2]  # inside r_max: ZBL acts
    graph = atoms_to_graph(atoms, SpeciesMap(model.type_names), model.r_max, model.cutoff_matrix)
    inputs = target_inputs(graph, "ase")
    for want, got in zip(eager(*inputs), program(*inputs), strict=True):
        torch.testing.assert_close(got, want.detach(), atol=1e-10, rtol=0, equal_nan=True)
    plain = TargetModule(exportable(make_model()), "ase")
    assert eager(*inputs)[0].sum() - plain(*inputs)[0].sum() > 1.0  # the term is in the program
