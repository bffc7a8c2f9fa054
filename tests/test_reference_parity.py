"""Weights of the reference framework, rebuilt natively, reproduce its numbers (float64).

Fixtures: ``tests/data/{allegro,nequip}_reference.pt``, made by
``tools/make_reference_fixtures.py`` with nequip 0.19.1 + nequip-allegro 0.8.3;
nequip is not needed here.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from allegro_ase import AllegroCalculator
from allegro_ase.models import AllegroModel, NequIPModel
from allegro_ase.nequip_files import model_from_reference
from allegro_ase.nequip_files.builders import (
    allegro_config_from_reference,
    nequip_config_from_reference,
)

ENERGY_ATOL, FORCE_ATOL, STRESS_ATOL = 1e-6, 1e-6, 1e-8  # eV, eV/Å, eV/Å^3


def _cases(architecture):
    path = Path(__file__).parent / "data" / f"{architecture}_reference.pt"
    return [(architecture, case) for case in torch.load(path, weights_only=True)["cases"]]


CASES = _cases("allegro") + _cases("nequip")
ALLEGRO_KWARGS = json.loads(CASES[0][1]["model_kwargs"])
NEQUIP_KWARGS = json.loads(_cases("nequip")[0][1]["model_kwargs"])


@pytest.mark.parametrize(
    "architecture, case", CASES, ids=[f"{arch}-{case['name']}" for arch, case in CASES]
)
def test_reference_weights_reproduce_reference_outputs(architecture, case):
    kwargs = json.loads(case["model_kwargs"])
    model = model_from_reference(kwargs, case["state_dict"], architecture=architecture)
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


def test_builder_name_picks_the_architecture():
    nequip = model_from_reference(NEQUIP_KWARGS, _cases("nequip")[0][1]["state_dict"])
    assert isinstance(nequip, NequIPModel)
    kwargs = {**ALLEGRO_KWARGS, "_target_": "allegro.model.AllegroModel"}
    allegro = model_from_reference(kwargs, CASES[0][1]["state_dict"])
    assert isinstance(allegro, AllegroModel)
    with pytest.raises(ValueError, match="made by 'mace.Model'.*architecture='allegro'"):
        model_from_reference({**kwargs, "_target_": "mace.Model"}, {})


def test_unsupported_reference_options_are_named():
    kwargs = dict(ALLEGRO_KWARGS)
    kwargs["pair_potential"] = {"_target_": "nequip.nn.pair_potential.LennardJones"}
    kwargs["radial_chemical_embed"] = {"_target_": "my_plugin.MyScalarEmbed"}
    with pytest.raises(ValueError, match="MyScalarEmbed.*LennardJones.*only .*ZBL is rebuilt"):
        allegro_config_from_reference(kwargs)


def test_unsupported_reference_nequip_options_are_named():
    kwargs = {
        **NEQUIP_KWARGS,
        "convnet_nonlinearity_type": "norm",
        "pair_potential": {"_target_": "nequip.nn.pair_potential.ZBL", "units": "lj"},
    }
    with pytest.raises(ValueError, match="NequIP.*convnet_nonlinearity_type='norm'"):
        nequip_config_from_reference(kwargs)
    with pytest.raises(ValueError, match="Unknown NequIP preset 'XXL'"):
        nequip_config_from_reference({**NEQUIP_KWARGS, "preset": "xxl"})
