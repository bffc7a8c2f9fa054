"""Many structures per call: calculate_batch, blocks of centre atoms, memory estimate, NEB and
lockstep relaxations give the serial numbers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc100
from ase.constraints import FixAtoms
from ase.filters import FrechetCellFilter
from ase.mep import NEB
from ase.optimize import BFGS, FIRE
from conftest import F64_ATOL, GEOMETRIES, calc_for, make_model, make_nequip_model

from allegro_ase import outputs as outputs_module
from allegro_ase.conversion import SpeciesMap, atoms_to_graph
from allegro_ase.images import BatchedImages, relax_many
from allegro_ase.memory import InsufficientMemoryError, measure_call_memory
from allegro_ase.outputs import compute_outputs

KEYS = ("energy", "energies", "forces", "stress", "stresses")


def assert_same_results(found: dict, expected: dict, atol: float = F64_ATOL) -> None:
    assert set(found) == set(expected)
    for key in KEYS:
        if key in expected:
            np.testing.assert_allclose(found[key], expected[key], rtol=0, atol=atol, err_msg=key)


def serial_results(calc, images, properties=("energy", "forces")):
    results = []
    for atoms in images:
        calc.calculate(atoms.copy(), properties)
        results.append(copy.deepcopy(calc.results))
    return results


def test_batch_equals_serial_for_every_model_and_geometry(model):
    images = [make() for make in GEOMETRIES.values()]
    calc = calc_for(model)
    batched = calc.calculate_batch(images)
    for found, expected in zip(batched, serial_results(calc, images), strict=True):
        assert_same_results(found, expected)


def test_batch_of_one_and_of_none():
    calc = calc_for(make_model())
    atoms = GEOMETRIES["alloy"]()
    assert calc.calculate_batch([]) == []
    (found,) = calc.calculate_batch([atoms], ("energy", "forces", "stress"))
    assert_same_results(found, serial_results(calc, [atoms], ("stress",))[0])


def test_batch_refuses_what_is_not_atoms_and_leaves_images_alone():
    calc = calc_for(make_model())
    atoms = GEOMETRIES["triclinic"]()
    before = atoms.copy()
    calc.calculate_batch([atoms, atoms])
    assert atoms == before and atoms.calc is None
    with pytest.raises(TypeError, match="ase.Atoms"):
        calc.calculate_batch([atoms, "Cu"])


def test_batch_stress_of_a_molecule_is_refused_by_name():
    from ase.calculators.calculator import PropertyNotImplementedError

    calc = calc_for(make_model())
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        calc.calculate_batch([GEOMETRIES["alloy"](), GEOMETRIES["cluster"]()], ["stress"])


@pytest.mark.parametrize("max_edges", [1, 9, 40, 10_000])
def test_blocks_of_centre_atoms_are_exact_for_allegro(allegro_model, max_edges):
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 2, 1)
    atoms.numbers[[1, 6, 9]] = 79
    atoms.numbers[4] = 1
    atoms.rattle(0.1, seed=5)
    graph = atoms_to_graph(atoms, SpeciesMap(allegro_model.type_names), allegro_model.r_max)
    whole = compute_outputs(allegro_model, graph)
    blocks = compute_outputs(allegro_model, graph, max_edges=max_edges)
    for name in ("energies", "forces", "virial", "atom_virials"):
        torch.testing.assert_close(
            getattr(blocks, name), getattr(whole, name), rtol=0, atol=F64_ATOL
        )


def test_message_passing_models_are_not_split_into_blocks():
    model = make_nequip_model()
    graph = atoms_to_graph(GEOMETRIES["alloy"](), SpeciesMap(model.type_names), model.r_max)
    with pytest.raises(ValueError, match="passes messages"):
        compute_outputs(model, graph, max_edges=10)


def test_small_memory_limit_splits_allegro_and_refuses_nequip(monkeypatch):
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (3, 3, 3)
    atoms.rattle(0.05, seed=2)
    model = make_model()
    expected = serial_results(calc_for(model), [atoms], ("stress",))[0]
    per_edge = measure_call_memory(model, torch.device("cpu")).per_edge
    calls = []
    original = outputs_module.chunked_edge_outputs

    def counting(*args, **kwargs):
        calls.append(args[-1])
        return original(*args, **kwargs)

    monkeypatch.setattr("allegro_ase.calculator.chunked_edge_outputs", counting)
    # room for about 200 edges per pass: the 108 atoms' ~4000 edges go in blocks
    small = calc_for(model, memory_limit=400 * per_edge / 1024**3)
    found = small.calculate_batch([atoms], ("stress",))[0]
    assert calls and 50 < calls[0] < 400
    assert_same_results(found, expected)

    nequip = calc_for(make_nequip_model(), memory_limit=400 * per_edge / 1024**3)
    atoms.calc = nequip
    with pytest.raises(InsufficientMemoryError, match=r"GiB.*float32.*Allegro"):
        atoms.get_potential_energy()


def test_huge_periodic_cell_is_refused_before_the_neighbour_list():
    unit = bulk("Cu", "fcc", a=3.6, cubic=True)
    shifts = np.stack(np.meshgrid(*[np.arange(80)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    positions = (unit.positions + shifts @ unit.cell.array).reshape(-1, 3)
    atoms = Atoms(["Cu"] * len(positions), positions, cell=unit.cell * 80, pbc=True)
    assert len(atoms) == 2_048_000
    atoms.calc = calc_for(make_model(), memory_limit=2.0)
    with pytest.raises(InsufficientMemoryError, match=r"2048000 atoms.*GiB.*fewer atoms"):
        atoms.get_potential_energy()


def test_memory_estimate_follows_the_saved_tensors_of_a_real_structure():
    from allegro_ase.memory import _saved_bytes

    model = make_model()
    estimate = measure_call_memory(model, torch.device("cpu"))
    assert estimate.per_edge > 100  # bytes: features of every edge are kept for backward
    for atoms_count, neighbors in ((40, 20), (64, 12)):
        measured = _saved_bytes(model, torch.device("cpu"), atoms_count, neighbors)
        predicted = estimate.per_edge * atoms_count * neighbors + estimate.per_atom * atoms_count
        assert predicted == pytest.approx(measured, rel=0.25)


def test_num_threads_applies_during_the_call_and_is_restored():
    seen = []
    model = make_model().requires_grad_(False)  # frozen: the calculator uses it, not a copy
    previous = torch.get_num_threads()
    target = 1 if previous != 1 else 2
    calc = calc_for(model, num_threads=target, compile=False)  # watches the eager forward
    hook = model.readout.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    try:
        calc.calculate(GEOMETRIES["alloy"](), ["energy"])
    finally:
        hook.remove()
    assert seen == [target] and torch.get_num_threads() == previous
    with pytest.raises(ValueError, match="num_threads"):
        calc_for(model, num_threads=0)


def adatom_neb(n_images: int = 5):
    slab = fcc100("Cu", size=(2, 2, 2), a=3.7, vacuum=4.0)
    add_adsorbate(slab, "Au", 1.8, "hollow")
    slab.set_constraint(FixAtoms(indices=list(range(4))))
    final = slab.copy()
    final.positions[-1, 0] += slab.cell[0, 0] / 2
    images = [slab] + [slab.copy() for _ in range(n_images - 2)] + [final]
    for image in images[1:-1]:
        image.set_constraint(FixAtoms(indices=list(range(4))))
    neb = NEB(images, method="improvedtangent")
    neb.interpolate()
    return neb, images


def test_neb_with_batched_images_follows_the_serial_band():
    model = make_model()
    calc = calc_for(model)
    neb_serial, serial_images = adatom_neb()
    for image in serial_images:
        image.calc = copy.copy(calc)
    neb_batched, batched_images = adatom_neb()
    group = BatchedImages(calc, batched_images)
    FIRE(neb_serial, logfile=None).run(fmax=0.05, steps=8)
    FIRE(neb_batched, logfile=None).run(fmax=0.05, steps=8)
    for a, b in zip(serial_images, batched_images, strict=True):
        np.testing.assert_allclose(b.positions, a.positions, atol=1e-9)
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-9)
    # one model call per optimiser step (plus the first), end points evaluated once
    assert group.num_calls == 9


def test_relax_many_matches_one_by_one_relaxations():
    model = make_model()
    calc = calc_for(model)
    structures = []
    for k, a in enumerate((3.6, 3.75, 3.9)):
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.numbers[k] = 79
        atoms.rattle(0.05, seed=k)
        structures.append(atoms)
    reference = [atoms.copy() for atoms in structures]
    for atoms in reference:
        atoms.calc = copy.copy(calc)
        BFGS(atoms, logfile=None).run(fmax=0.02, steps=40)
    converged = relax_many(structures, calc, fmax=0.02, steps=40, optimizer=BFGS)
    assert all(converged)
    for found, expected in zip(structures, reference, strict=True):
        np.testing.assert_allclose(found.positions, expected.positions, atol=1e-8)
    cell_converged = relax_many(structures, calc, fmax=0.02, steps=60, relax_cell=True)
    assert all(cell_converged)
    state = np.random.get_state()  # the filter's logm (scipy) draws from numpy's global RNG
    for atoms in structures:
        generalised_forces = FrechetCellFilter(atoms).get_forces()
        assert np.linalg.norm(generalised_forces, axis=1).max() < 0.02
    np.random.set_state(state)


def test_batched_example_reproduces_the_serial_barrier_and_emt_mixing(capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import batched_neb_and_screening

    result = batched_neb_and_screening.main(["--alloys", "3"])
    assert result["barrier"] == pytest.approx(0.374, abs=0.03)  # EMT's barrier (ASE tutorial)
    assert all(result["converged"])
    np.testing.assert_allclose(result["mixing_model"], result["mixing_emt"], atol=0.004)  # eV/atom
    assert "model calls" in capsys.readouterr().out
