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
