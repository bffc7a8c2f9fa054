"""Close contact: the shipped metals models repel atoms pushed together, down to 0.5 Å.

A learned potential knows only the distances of its data; below them its energy may fall (the
EMT models shipped before, allegro-emt-metals v2 and nequip-emt-metals v1, gave Au2 at 1.2 Å a
lower energy than at 2.5 Å). Scanned for every element pair, energies must rise and forces push
apart at each step:

* an isolated dimer from 2.0 Å (below EMT's dimer bond lengths, 2.17-2.44 Å) to 0.5 Å;
* one atom of an 8-atom fcc cell (2 x 1 x 1 cubic) moved along the bond onto a nearest
  neighbour, from the nearest-neighbour distance to 0.5 Å (an A atom substituted into the B
  crystal for A != B);
* each fcc crystal and 50/50 alloy compressed isotropically by up to 25 % in length (to 42 % of
  its volume; EMT puts Au there at 15 eV/atom and 1 TPa). Deeper, every atom has 12 neighbours
  near 2 Å, where the networks extrapolate and the ZBL term (below 2 Å) has barely begun; two
  known soft spots inside the range are strict xfails (SOFT_UNDER_COMPRESSION).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from allegro_ase import AllegroCalculator

MODELS = ("allegro-emt-metals", "nequip-emt-metals")
ELEMENTS = ("Al", "Cu", "Ag", "Au")
PAIRS = list(itertools.combinations_with_replacement(ELEMENTS, 2))
EMT_LATTICE = {"Al": 3.9945, "Cu": 3.5935, "Ag": 4.0682, "Au": 4.0618}  # Å, tools/README.md
STEP = 0.1  # Å between scan points
SHORTEST = 0.5  # Å
DEEPEST_COMPRESSION = 0.75  # smallest nearest-neighbour distance of the compression scan / nn
# the energy must rise by more than float32 noise per step (eV)
MIN_RISE = 1e-4


# compressions where a model's energy is known to fall (its card, "Close contact"): the networks
# are the earlier versions' and their training data stop at 4 % compression; the ZBL term acts
# only below 2 Å. Strict: a model that gets them right must drop its entry here.
SOFT_UNDER_COMPRESSION = {
    ("allegro-emt-metals", "Al"): "energy falls between 0.84 and 0.82 of the nn distance",
    ("nequip-emt-metals", "Cu"): "energy falls between 0.78 and 0.76 of the nn distance",
}


@pytest.fixture(scope="module", params=MODELS)
def calc(request) -> AllegroCalculator:
    calc = AllegroCalculator.from_pretrained(request.param, device="cpu")
    calc.zoo_name = request.param
    return calc


def scan(start: float) -> np.ndarray:
    """Distances from ``start`` down to 0.5 Å, STEP apart (Å)."""
    return np.arange(start, SHORTEST - 1e-9, -STEP)


def assert_repulsive(energies, forces_apart, distances, what):
    """Energy rises at every step towards shorter distance; the force pushes apart everywhere."""
    rises = np.diff(energies)
    bad = np.flatnonzero(rises <= MIN_RISE)
    assert bad.size == 0, (
        f"{what}: energy does not rise from {distances[bad[0]]:.2f} to "
        f"{distances[bad[0] + 1]:.2f} Å ({energies[bad[0]]:.4f} -> {energies[bad[0] + 1]:.4f} eV)"
    )
    bad = np.flatnonzero(np.asarray(forces_apart) <= 0)
    assert bad.size == 0, f"{what}: the force pulls inwards at {distances[bad[0]]:.2f} Å"


@pytest.mark.parametrize("pair", PAIRS, ids="".join)
def test_dimer_energy_rises_and_force_repels_down_to_half_an_angstrom(calc, pair):
    distances = scan(2.0)
    energies, apart = [], []
    for r in distances:
        atoms = Atoms("".join(pair), positions=[[0, 0, 0], [0, 0, r]])
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        apart.append(atoms.get_forces()[1, 2])  # on the upper atom, +z is away
    assert_repulsive(energies, apart, distances, f"{''.join(pair)} dimer")


def host_cell(mover: str, host: str) -> Atoms:
    """8-atom fcc cell of ``host`` (EMT lattice constant) with atom 0 made ``mover``."""
    atoms = bulk(host, "fcc", a=EMT_LATTICE[host], cubic=True).repeat((2, 1, 1))
    atoms.symbols[0] = mover
    return atoms


@pytest.mark.parametrize("pair", PAIRS, ids="".join)
def test_atom_pushed_onto_a_neighbour_in_the_crystal_is_repelled(calc, pair):
    mover, host = pair
    base = host_cell(mover, host)
    bond = base.get_distance(0, 1, mic=True, vector=True)  # atom 1: a nearest neighbour
    nn = np.linalg.norm(bond)
    unit = bond / nn
    distances = scan(nn)
    energies, apart = [], []
    for d in distances:
        atoms = base.copy()
        atoms.positions[0] = base.positions[0] + unit * (nn - d)
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        apart.append(-atoms.get_forces()[0] @ unit)  # on the mover, away from atom 1
    assert_repulsive(energies, apart[1:], distances[1:], f"{mover} pushed onto {host}")


@pytest.mark.parametrize("system", [(el,) for el in ELEMENTS] + list(itertools.combinations(ELEMENTS, 2)), ids="".join)  # fmt: skip
def test_compressed_crystal_energy_rises_and_pressure_is_positive(calc, system, request):
    known = SOFT_UNDER_COMPRESSION.get((calc.zoo_name, "".join(system)))
    if known:
        request.applymarker(pytest.mark.xfail(strict=True, reason=known))
    a = float(np.mean([EMT_LATTICE[el] for el in system]))
    atoms = bulk(system[0], "fcc", a=a, cubic=True)
    if len(system) == 2:
        atoms.symbols[[1, 2]] = system[1]  # L1_0-like 50/50 ordering of the cubic cell
    nn = a / np.sqrt(2)
    distances = np.arange(nn, DEEPEST_COMPRESSION * nn - 1e-9, -STEP)
    energies, pressures = [], []
    for d in distances:
        compressed = atoms.copy()
        compressed.set_cell(atoms.cell * (d / nn), scale_atoms=True)
        compressed.calc = calc
        energies.append(compressed.get_potential_energy())
        pressures.append(-compressed.get_stress()[:3].mean())  # ASE sign: positive = tensile
    # at the lattice constant the pressure is ~0 either way; repulsion from the first step on
    assert_repulsive(energies, pressures[1:], distances[1:], f"{''.join(system)} compressed")
