"""Velocity Verlet with the model's forces conserves the total energy."""

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet
from conftest import calc_for, make_model

# Over 300 steps of 1 fs at 600 K the total energy of the 108-atom cell stays within this
# bound (peak-to-peak, eV per atom); measured 2.1e-6 on 2026-11-24, CPU, float64.
ENERGY_DRIFT_BOUND = 2e-5


@pytest.mark.slow
def test_nve_conserves_energy():
    model = make_model(
        type_names=["Cu"],
        l_max=1,
        r_max=4.5,
        avg_num_neighbors=30.0,
        per_type_energy_scales={"Cu": 0.5},
        per_type_energy_shifts={"Cu": -3.5},
    )
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * 3
    atoms.calc = calc_for(model)
    masses = atoms.get_masses()[:, None]
    momenta = np.random.default_rng(0).normal(size=(len(atoms), 3)) * np.sqrt(
        masses * 600 * units.kB
    )
    atoms.set_momenta(momenta - momenta.mean(axis=0))
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    totals, kinetic = [], []
    dynamics.attach(lambda: totals.append(atoms.get_total_energy()), interval=5)
    dynamics.attach(lambda: kinetic.append(atoms.get_kinetic_energy()), interval=5)
    dynamics.run(300)
    totals = np.array(totals) / len(atoms)
    assert np.ptp(kinetic) > 0.1 * len(atoms) * 600 * units.kB  # the atoms really move
    print(f"NVE energy spread {np.ptp(totals):.2e} eV/atom")
    assert np.ptp(totals) < ENERGY_DRIFT_BOUND, f"energy spread {np.ptp(totals):.2e} eV/atom"
