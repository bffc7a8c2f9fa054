"""CUDA gives the CPU's numbers (skipped without a GPU)."""

import numpy as np
import pytest
import torch
from conftest import GEOMETRIES, calc_for

from allegro_ase import AllegroCalculator

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("geometry", ["alloy", "triclinic", "slab", "cluster"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda_matches_cpu(model, geometry, dtype):
    atoms = GEOMETRIES[geometry]()
    atoms.calc = calc_for(model, dtype=dtype)
    cpu = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = AllegroCalculator(model, device="cuda", dtype=dtype)
    rtol = 1e-10 if dtype == "float64" else 1e-5
    assert abs(atoms.get_potential_energy() - cpu[0]) <= rtol * abs(cpu[0])
    np.testing.assert_allclose(
        atoms.get_forces(), cpu[1], atol=1e-4 if dtype == "float32" else 1e-10
    )


def test_auto_device_picks_cuda(default_model):
    assert AllegroCalculator(default_model, device="auto").device.type == "cuda"


def test_cuda_batch_equals_cpu_serial(model):
    images = [make() for make in GEOMETRIES.values()]
    cpu = calc_for(model)
    expected = []
    for atoms in images:
        cpu.calculate(atoms, ["energy", "forces"])
        expected.append((cpu.results["energy"], cpu.results["forces"].copy()))
    batched = AllegroCalculator(model, device="cuda").calculate_batch(images)
    for found, (energy, forces) in zip(batched, expected, strict=True):
        assert found["energy"] == pytest.approx(energy, abs=1e-9)
        np.testing.assert_allclose(found["forces"], forces, atol=1e-9)


def test_cuda_blocks_and_memory_budget(allegro_model):
    from allegro_ase.memory import available_bytes

    assert 0 < available_bytes(torch.device("cuda")) < float("inf")
    atoms = GEOMETRIES["alloy"]() * (2, 2, 2)
    whole = AllegroCalculator(allegro_model, device="cuda", block_edges=None)
    blocks = AllegroCalculator(allegro_model, device="cuda", block_edges=50)
    whole.calculate(atoms, ["energy", "forces"])
    blocks.calculate(atoms, ["energy", "forces"])
    assert blocks.results["energy"] == pytest.approx(whole.results["energy"], abs=1e-9)
    np.testing.assert_allclose(blocks.results["forces"], whole.results["forces"], atol=1e-9)


@pytest.mark.parametrize("variant", ["lmax2-parity-coupled", "nequip-lmax1-parity-3layers"])
def test_cuda_compiled_matches_cpu(variant, tmp_path, monkeypatch):
    from conftest import build_variant

    monkeypatch.setenv("ALLEGRO_ASE_CACHE", str(tmp_path))
    model = build_variant(variant).requires_grad_(False)
    compiled = AllegroCalculator(model, device="cuda", compile=True)
    for geometry in ("alloy", "triclinic", "cluster"):
        atoms = GEOMETRIES[geometry]()
        atoms.calc = calc_for(model)
        cpu = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = compiled
        assert atoms.get_potential_energy() == pytest.approx(cpu[0], rel=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), cpu[1], atol=1e-10)
