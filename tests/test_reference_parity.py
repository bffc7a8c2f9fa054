"""Weights of the reference framework, rebuilt natively, reproduce its numbers (float64).

Fixtures: ``tests/data/allegro_reference.pt``, made by
``tools/make_allegro_reference_fixtures.py`` with nequip 0.19.1 + nequip-allegro 0.8.3;
nequip is not needed here.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from allegro_ase import AllegroCalculator
from allegro_ase.io.nequip_compat import allegro_config_from_reference, allegro_from_reference

FIXTURES = torch.load(Path(__file__).parent / "data" / "allegro_reference.pt", weights_only=True)[
    "cases"
]
ENERGY_ATOL, FORCE_ATOL, STRESS_ATOL = 1e-6, 1e-6, 1e-8  # eV, eV/Å, eV/Å^3


@pytest.mark.parametrize("case", FIXTURES, ids=[case["name"] for case in FIXTURES])
def test_reference_allegro_weights_reproduce_reference_outputs(case):
    model = allegro_from_reference(json.loads(case["model_kwargs"]), case["state_dict"])
    calc = AllegroCalculator(model, device="cpu")
    for structure in case["structures"]:
        atoms = Atoms(
            numbers=structure["numbers"].numpy(),
            positions=structure["positions"].numpy(),
            cell=structure["cell"].numpy(),
            pbc=structure["pbc"].numpy(),
        )
        atoms.calc = calc
        assert abs(atoms.get_potential_energy() - structure["energy"]) < ENERGY_ATOL
        np.testing.assert_allclose(
            atoms.get_potential_energies(), structure["energies"], atol=ENERGY_ATOL
        )
        np.testing.assert_allclose(atoms.get_forces(), structure["forces"], atol=FORCE_ATOL, rtol=0)
        if atoms.pbc.any():
            np.testing.assert_allclose(
                atoms.get_stress(), structure["stress"], atol=STRESS_ATOL, rtol=0
            )


def test_unsupported_reference_options_are_named():
    kwargs = json.loads(FIXTURES[0]["model_kwargs"])
    kwargs["pair_potential"] = {"_target_": "nequip.nn.pair_potential.ZBL"}
    kwargs["radial_chemical_embed"] = {"_target_": "allegro.nn.TwoBodySplineScalarEmbed"}
    with pytest.raises(
        ValueError, match="TwoBodySplineScalarEmbed.*pair_potential|pair_potential.*TwoBodySpline"
    ):
        allegro_config_from_reference(kwargs)
