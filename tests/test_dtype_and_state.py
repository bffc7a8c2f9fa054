"""float32 and float64 agree; nothing global or user-owned is changed."""

import numpy as np
import torch
from conftest import F32_RTOL, GEOMETRIES, calc_for, make_model, make_nequip_model

from allegro_ase import AllegroCalculator


def test_float32_matches_float64_of_same_weights(model):
    atoms = GEOMETRIES["alloy"]()
    atoms.calc = calc_for(model)
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = calc_for(model, dtype="float32")
    assert atoms.calc.model.config.model_dtype == "float32"
    assert abs(atoms.get_potential_energy() - energy) <= F32_RTOL * abs(energy)
    force_scale = np.abs(forces).max()
    assert np.abs(atoms.get_forces() - forces).max() <= 1e-4 * force_scale
    assert np.abs(atoms.get_stress() - stress).max() <= 1e-4 * np.abs(stress).max()


def test_float32_keeps_float64_energy_shifts():
    model = make_model(model_dtype="float32")
    assert model.scale_shift.shifts.dtype == torch.float64
    assert model.cutoff_matrix.dtype == torch.float64
    assert model.two_body_embed.center_embed.dtype == torch.float32


def test_calculator_leaves_atoms_and_model_untouched(default_model):
    atoms = GEOMETRIES["triclinic"]()
    atoms.set_initial_magnetic_moments(np.zeros(len(atoms)))
    before = atoms.copy()
    info = dict(atoms.info)
    weights = {k: v.clone() for k, v in default_model.state_dict().items()}
    flags = [p.requires_grad for p in default_model.parameters()]
    atoms.calc = AllegroCalculator(default_model, device="cpu", dtype="float32")
    atoms.get_forces(), atoms.get_stress()
    assert atoms == before and atoms.info == info
    np.testing.assert_array_equal(atoms.positions, before.positions)
    assert [p.requires_grad for p in default_model.parameters()] == flags
    assert all(torch.equal(v, weights[k]) for k, v in default_model.state_dict().items())


def test_model_init_is_seeded_locally():
    a, b = make_model(seed=3), make_model(seed=3)
    c = make_model(seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters(), strict=True))


def test_float64_copy_of_float32_model_has_float64_clebsch_gordan():
    """Constants that are not saved are rebuilt in float64, not upcast from float32."""
    from e3nn import o3

    from allegro_ase.models import with_dtype

    model = with_dtype(make_nequip_model(l_max=2, num_layers=3, model_dtype="float32"), "float64")
    native = make_nequip_model(l_max=2, num_layers=3, model_dtype="float64")
    contractions = {n: b for n, b in model.named_buffers() if "contraction_" in n}
    assert contractions  # the uvu tensor products' 3j contractions
    for name, value in contractions.items():
        assert value.dtype == torch.float64
        assert torch.equal(value, native.get_buffer(name))
    for name, value in model.named_buffers():  # e3nn's own constants, where it keeps any
        if "_w3j_" in name:
            orders = [int(order) for order in name.rsplit("_w3j_", 1)[1].split("_")]
            assert torch.equal(value, o3.wigner_3j(*orders, dtype=torch.float64))
