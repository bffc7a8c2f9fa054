"""torch-sim ModelInterface: one batched call equals the ASE calculator on each system."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import InputError
from ase.cluster import Icosahedron

ts = pytest.importorskip("torch_sim")

from allegro_ase import AllegroCalculator, load_model  # noqa: E402
from allegro_ase.models import with_dtype  # noqa: E402
from allegro_ase.torch_sim import AllegroTorchSimModel  # noqa: E402
from allegro_ase.zoo import resolve  # noqa: E402

MODELS = ["allegro-emt-metals", "nequip-emt-metals"]
CPU = torch.device("cpu")
F64_RTOL = 1e-10  # batched vs calculator, both float64
F64_ATOL = 1e-12  # eV, eV/Å, eV/Å³ on values that are zero by symmetry


def three_systems() -> list[Atoms]:
    """fcc Cu 3x3x3, a Cu3Au cell smaller than r_max, a triclinic Al-Ag cell; all rattled."""
    cu = bulk("Cu", "fcc", a=3.61, cubic=True) * 3  # 108 atoms
    cu3au = bulk("Cu", "fcc", a=3.75, cubic=True)  # 3.75 Å < r_max
    cu3au.numbers[0] = 79
    alag = bulk("Al", "fcc", a=4.08) * (2, 2, 2)  # primitive fcc: triclinic, 8 atoms
    alag.numbers[1::2] = 47
    alag.set_cell(
        alag.cell.array @ [[1.0, 0.04, -0.03], [0.0, 1.02, 0.05], [0.0, 0.0, 0.98]],
        scale_atoms=True,
    )  # a generic shear: no two angles or lengths equal
    for seed, atoms in enumerate([cu, cu3au, alag]):
        atoms.rattle(0.05, seed=seed)
    return [cu, cu3au, alag]


def state_of(systems: list[Atoms], pbc=None):
    state = ts.io.atoms_to_state(systems, CPU, torch.float64)
    if pbc is not None:
        state.pbc = torch.tensor(pbc)  # torch-sim >= 0.4 keeps pbc as a (3,) tensor
    return state


def calculator_results(calc: AllegroCalculator, systems: list[Atoms], pbc=None, stress=True):
    energies, forces, stresses = [], [], []
    for atoms in systems:
        atoms = atoms.copy()
        if pbc is not None:
            atoms.pbc = pbc
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
        if stress:
            stresses.append(atoms.get_stress(voigt=False))
    return np.array(energies), np.concatenate(forces), np.array(stresses)


@pytest.fixture(scope="module", params=MODELS)
def pair(request):
    """(ASE calculator, torch-sim model) of the same zoo model, both float64."""
    model = with_dtype(load_model(resolve(request.param)), "float64").requires_grad_(False)
    return AllegroCalculator(model, device="cpu"), AllegroTorchSimModel(model, device="cpu")


def assert_matches(out, reference, stress=True):
    energy, forces, stress_3x3 = reference
    np.testing.assert_allclose(out["energy"].numpy(), energy, rtol=F64_RTOL, atol=F64_ATOL)
    scale = np.abs(forces).max()
    np.testing.assert_allclose(out["forces"].numpy(), forces, rtol=F64_RTOL, atol=F64_RTOL * scale)
    if stress:
        scale = np.abs(stress_3x3).max()
        np.testing.assert_allclose(
            out["stress"].numpy(), stress_3x3, rtol=F64_RTOL, atol=F64_RTOL * scale
        )


def test_batch_equals_calculator_on_each_system(pair):
    calc, model = pair
    systems = three_systems()
    out = model(state_of(systems))
    assert out["energy"].shape == (3,) and out["stress"].shape == (3, 3, 3)
    assert out["forces"].shape == (sum(map(len, systems)), 3)
    assert all(value.dtype == torch.float64 for value in out.values())
    assert_matches(out, calculator_results(calc, systems))


def test_state_dict_gives_the_same_as_the_state(pair):
    _, model = pair
    state = state_of(three_systems())
    fields = ("positions", "cell", "pbc", "atomic_numbers", "system_idx")
    from_dict = model({name: getattr(state, name) for name in fields})
    from_state = model(state)
    for key in ("energy", "forces", "stress"):
        assert torch.equal(from_dict[key], from_state[key])


def test_mixed_pbc_batch_equals_calculator(pair):
    """Slabs: periodic in x and y only, as torch-sim >= 0.4 can say (pbc a (3,) tensor)."""
    calc, model = pair
    systems, pbc = three_systems(), [True, True, False]
    out = model(state_of(systems, pbc))
    assert_matches(out, calculator_results(calc, systems, pbc))


def test_clusters_without_stress_equal_calculator(pair):
    calc, model = pair
    cu13 = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    au13 = Icosahedron("Au", noshells=2, latticeconstant=4.08)
    for seed, atoms in enumerate([cu13, au13]):
        atoms.rattle(0.05, seed=seed)
        atoms.center(vacuum=5.0)
    model.compute_stress = False
    try:
        out = model(state_of([cu13, au13], pbc=[False] * 3))
    finally:
        model.compute_stress = True
    assert "stress" not in out
    assert_matches(out, calculator_results(calc, [cu13, au13], stress=False), stress=False)


def test_energies_only_equal_calculator(pair):
    calc, model = pair
    systems = three_systems()
    model.compute_forces = model.compute_stress = False
    try:
        out = model(state_of(systems))
    finally:
        model.compute_forces = model.compute_stress = True
    assert set(out) == {"energy"}
    energy, _, _ = calculator_results(calc, systems, stress=False)
    np.testing.assert_allclose(out["energy"].numpy(), energy, rtol=F64_RTOL, atol=F64_ATOL)


def test_batch_is_one_model_call():
    model = AllegroTorchSimModel.from_pretrained("allegro-emt-metals", device="cpu")
    calls = []
    handle = model.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        model(state_of(three_systems()))
    finally:
        handle.remove()
    assert len(calls) == 1


def test_new_elements_at_the_same_positions_are_mapped_again(pair):
    calc, model = pair
    systems = three_systems()
    model(state_of(systems))
    for atoms in systems:
        atoms.numbers = np.where(atoms.numbers == 29, 79, 29)  # Cu <-> Au, same atom count
    assert_matches(model(state_of(systems)), calculator_results(calc, systems))


def test_float32_weights_give_float64_outputs_close_to_float64():
    systems = three_systems()
    out32 = AllegroTorchSimModel.from_pretrained("allegro-emt-metals", device="cpu")(
        state_of(systems)
    )
    out64 = AllegroTorchSimModel.from_pretrained(
        "allegro-emt-metals", device="cpu", dtype="float64"
    )(state_of(systems))
    assert out32["energy"].dtype == torch.float64
    np.testing.assert_allclose(out32["energy"], out64["energy"], rtol=1e-5)
    np.testing.assert_allclose(out32["forces"], out64["forces"], atol=1e-4)


def test_unknown_element_is_named():
    model = AllegroTorchSimModel.from_pretrained("allegro-emt-metals", device="cpu")
    fe = bulk("Fe", "bcc", a=2.87, cubic=True)
    with pytest.raises(InputError, match="no parameters for Fe; it knows Al, Cu, Ag, Au"):
        model(state_of([bulk("Cu", "fcc", a=3.61, cubic=True), fe]))


def test_stress_of_a_cluster_is_refused_with_the_remedy():
    model = AllegroTorchSimModel.from_pretrained("allegro-emt-metals", device="cpu")
    cluster = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    cluster.center(vacuum=5.0)
    with pytest.raises(
        ValueError, match="System 0 has no periodic direction.*compute_stress=False"
    ):
        model(state_of([cluster], pbc=[False] * 3))


def test_atoms_on_top_of_each_other_are_named():
    model = AllegroTorchSimModel.from_pretrained("allegro-emt-metals", device="cpu")
    broken = bulk("Cu", "fcc", a=3.61, cubic=True)
    broken.positions[2] = broken.positions[1] + [0.01, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"In system 1, atoms 1 and 2 are 0\.01 Å apart"):
        model(state_of([bulk("Au", "fcc", a=4.08, cubic=True), broken]))


def named(registry: str, name: str, legacy: str):
    """``ts.<registry>.<name>`` in torch-sim >= 0.4, ``ts.<legacy>`` before."""
    return getattr(getattr(ts, registry), name) if hasattr(ts, registry) else getattr(ts, legacy)


def total_energy(state) -> torch.Tensor:
    kinetic = 0.5 * (state.momenta**2).sum(1) / state.masses
    return state.energy + torch.zeros_like(state.energy).index_add(0, state.system_idx, kinetic)


def test_nve_md_conserves_energy_of_each_system():
    model = AllegroTorchSimModel.from_pretrained("allegro-emt-metals", device="cpu")
    nve = named("Integrator", "nve", "nve")
    kwargs = dict(model=model, integrator=nve, temperature=600.0, timestep=0.001)  # K, ps
    state = ts.integrate(system=three_systems(), n_steps=1, **kwargs)
    start_total, start_potential = total_energy(state), state.energy.clone()
    state = ts.integrate(system=state, n_steps=15, **kwargs)  # keeps the momenta
    drift = (total_energy(state) - start_total).abs()
    exchange = (state.energy - start_potential).abs()
    n_atoms = torch.bincount(state.system_idx).to(torch.float64)
    assert torch.isfinite(state.energy).all()
    assert (drift / n_atoms < 2e-5).all(), drift  # eV/atom over 15 fs
    assert (drift < 0.02 * exchange).all(), (drift, exchange)  # forces are -dE/dr


@pytest.mark.filterwarnings("ignore:Optimize has reached max steps")
def test_cell_relaxation_removes_stress_and_lowers_energy():
    """FIRE on positions and cell (Frechet filter) needs the stress with torch-sim's sign."""
    model = AllegroTorchSimModel.from_pretrained("allegro-emt-metals", device="cpu")
    systems = three_systems()
    systems[0] = bulk("Cu", "fcc", a=3.50, cubic=True) * 2  # compressed by 3 %
    systems[1].set_cell(systems[1].cell * 1.05, scale_atoms=True)  # stretched by 5 %
    start = model(state_of(systems))
    if hasattr(ts, "Optimizer"):
        optimizer = dict(
            optimizer=ts.Optimizer.fire, init_kwargs={"cell_filter": ts.CellFilter.frechet}
        )
    else:
        optimizer = dict(optimizer=ts.frechet_cell_fire)
    state = ts.optimize(
        system=state_of(systems),
        model=model,
        max_steps=30,
        convergence_fn=lambda state, _: torch.zeros(state.n_systems, dtype=torch.bool),
        **optimizer,
    )
    end = model(state)
    assert (end["energy"] < start["energy"]).all()
    start_stress, end_stress = (out["stress"].abs().amax((1, 2)) for out in (start, end))
    assert (start_stress[:2] > 0.05).all()  # eV/Å³: the strained cells
    assert (end_stress[:2] < 0.02 * start_stress[:2]).all(), (start_stress, end_stress)
    assert end_stress[2] < 0.3 * start_stress[2], (start_stress, end_stress)


def test_example_runs_a_batched_md(capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import torch_sim_batched_md

    result = torch_sim_batched_md.main(["--steps", "4", "--device", "cpu"])
    assert np.isfinite(result["potential_energy"]).all() and len(result["temperature"]) == 3
    out = capsys.readouterr().out
    assert "done: 4 steps of 3 systems (120 atoms) in one batch" in out
