"""Shared small models and structures for the physics tests."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT

from allegro_ase import AllegroCalculator, AllegroConfig, AllegroModel
from allegro_ase.datasets import Frame
from allegro_ase.models import NequIPConfig, NequIPModel

R_MAX = 4.0

# float64 tolerances, named once
FORCE_FD_RTOL = 1e-6
STRESS_FD_ATOL = 1e-8  # eV/Å^3
F64_ATOL = 1e-10
F32_RTOL = 1e-5

# Small random-weight models that still exercise every code path.
MODEL_VARIANTS = {
    "lmax2-parity-coupled": dict(l_max=2, parity=True, tp_path_channel_coupling=True),
    "lmax1-noparity-uncoupled-1layer": dict(
        l_max=1, parity=False, tp_path_channel_coupling=False, num_layers=1
    ),
    "lmax1-3layers-edge-cutoffs": dict(
        l_max=1,
        num_layers=3,
        per_edge_type_cutoff={"Cu": {"Au": 3.2}, "Au": 3.6},
        avg_num_neighbors={"Cu": 20.0, "Au": 15.0, "H": 10.0},
    ),
    # the reference's spline two-body embedding, with the ZBL pair term
    "lmax1-spline-zbl": dict(
        l_max=1,
        two_body_embed="spline",
        num_splines=8,
        spline_span=5,
        radial_chemical_embed_dim=10,
        pair_potential={"kind": "zbl", "polynomial_cutoff_p": 5},
        per_edge_type_cutoff={"Cu": {"Au": 3.2}, "Au": 3.6},
    ),
}
# NequIP (message passing) variants; the receptive field is num_layers * r_max.
NEQUIP_VARIANTS = {
    "nequip-lmax2-parity-2layers": dict(l_max=2, parity=True, num_layers=2),
    # the shape of the shipped nequip-emt-metals; its middle layer holds an e3nn constant buffer
    "nequip-lmax1-parity-3layers": dict(l_max=1, parity=True, num_layers=3),
    "nequip-lmax1-noparity-3layers-resnet-edge-cutoffs": dict(
        l_max=1,
        parity=False,
        num_layers=3,
        convnet_resnet=True,
        per_edge_type_cutoff={"Cu": {"Au": 3.2}, "Au": 3.6},
        avg_num_neighbors={"Cu": 10.0, "Au": 8.0, "H": 6.0},
    ),
    # FullNequIPGNNModel's per-layer irreps and radial MLPs (as NequIP-OAM-L), with ZBL
    "nequip-full-per-layer-zbl": dict(
        feature_irreps_hidden=["6x0e+4x1o+2x2e+2x3o", "5x0e+3x1o", "6x0e"],
        irreps_edge_sh="1x0e+1x1o+1x2e+1x3o",
        type_embed_num_features=5,
        radial_mlp_depth=[1, 2, 1],
        radial_mlp_width=[8, 6, 4],
        polynomial_cutoff_p=5,
        bessel_trainable=True,
        parity=False,
        pair_potential="zbl",
    ),
}


def small_config(**overrides) -> AllegroConfig:
    values = dict(
        type_names=["Cu", "Au", "H"],
        r_max=R_MAX,
        l_max=2,
        avg_num_neighbors=18.0,
        num_scalar_features=16,
        num_tensor_features=4,
        num_bessels=6,
        scalar_embed_mlp_hidden_layers_width=16,
        allegro_mlp_hidden_layers_width=16,
        readout_mlp_hidden_layers_width=8,
        per_type_energy_scales={"Cu": 0.7, "Au": 1.3, "H": 0.4},
        per_type_energy_shifts={"Cu": -3.5, "Au": -3.1, "H": -1.2},
        model_dtype="float64",
        seed=7,
    )
    values.update(overrides)
    return AllegroConfig(**values)


def make_model(**overrides) -> AllegroModel:
    return AllegroModel(small_config(**overrides))


def make_nequip_model(**overrides) -> NequIPModel:
    values = dict(
        type_names=["Cu", "Au", "H"],
        r_max=R_MAX,
        avg_num_neighbors=12.0,
        l_max=2,
        num_layers=2,
        num_features=6,
        radial_mlp_width=8,
        num_bessels=6,
        per_type_energy_scales={"Cu": 0.7, "Au": 1.3, "H": 0.4},
        per_type_energy_shifts={"Cu": -3.5, "Au": -3.1, "H": -1.2},
        model_dtype="float64",
        seed=7,
    )
    values.update(overrides)
    return NequIPModel(NequIPConfig(**values))


def build_variant(name: str) -> torch.nn.Module:
    if name in NEQUIP_VARIANTS:
        return make_nequip_model(**NEQUIP_VARIANTS[name])
    return make_model(**MODEL_VARIANTS[name])


def receptive_hops(model: torch.nn.Module) -> int:
    """Neighbour hops that reach an atom's energy: 1 (Allegro, strictly local) or num_layers."""
    return model.config.num_layers if isinstance(model, NequIPModel) else 1


@pytest.fixture(params=[*MODEL_VARIANTS, *NEQUIP_VARIANTS], scope="session")
def model(request) -> torch.nn.Module:
    """Every small model variant, Allegro and NequIP, frozen as for deployment.

    Frozen, so that calculators use it as it is instead of copying it (copying NequIP's e3nn
    modules costs ~0.1 s, which adds up over many dimers).
    """
    return build_variant(request.param).requires_grad_(False)


@pytest.fixture(params=list(MODEL_VARIANTS), scope="session")
def allegro_model(request) -> AllegroModel:
    """The Allegro variants only (strictly local models)."""
    return make_model(**MODEL_VARIANTS[request.param]).requires_grad_(False)


@pytest.fixture(scope="session")
def default_model() -> AllegroModel:
    return make_model()


# ALLEGRO_ASE_TEST_BLOCK_EDGES=N runs every calculator of the physics tests with block_edges=N
# (e.g. 7: Allegro structures in many blocks of centre atoms), to check that path end to end
TEST_BLOCK_EDGES = os.environ.get("ALLEGRO_ASE_TEST_BLOCK_EDGES")
# ALLEGRO_ASE_TEST_COMPILE=1 runs them with compile=True (each model compiles once, 15-80 s,
# into the cache of ALLEGRO_ASE_CACHE; tests/test_compile.py covers the path in every run)
TEST_COMPILE = os.environ.get("ALLEGRO_ASE_TEST_COMPILE", "") not in ("", "0")


def calc_for(model, **kwargs) -> AllegroCalculator:
    if TEST_BLOCK_EDGES is not None:
        kwargs.setdefault("block_edges", int(TEST_BLOCK_EDGES))
    if TEST_COMPILE:
        kwargs.setdefault("compile", True)
    return AllegroCalculator(model, device="cpu", **kwargs)


def alloy(seed: int = 0) -> Atoms:
    """2x1x1 cubic fcc Cu-Au-H cell (8 atoms), rattled: a cell smaller than 2 r_max."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 1, 1)
    atoms.numbers[[1, 4]] = 79
    atoms.numbers[6] = 1
    atoms.rattle(0.1, seed=seed)
    return atoms


def triclinic(seed: int = 1) -> Atoms:
    cell = [[3.9, 0.0, 0.0], [1.1, 3.6, 0.0], [0.7, -0.9, 4.2]]
    rng = np.random.default_rng(seed)
    atoms = Atoms("Cu3AuH", scaled_positions=rng.random((5, 3)), cell=cell, pbc=True)
    _push_apart(atoms)
    return atoms


def tiny_cell() -> Atoms:
    """One atom in a primitive fcc cell: every neighbour is an image of itself."""
    atoms = bulk("Au", "fcc", a=4.0)
    return atoms


def two_atom_tiny_cell() -> Atoms:
    atoms = Atoms("CuAu", positions=[[0, 0, 0], [1.3, 1.1, 0.9]], cell=[2.6, 2.8, 3.1], pbc=True)
    return atoms


def slab() -> Atoms:
    atoms = fcc111("Cu", size=(2, 2, 2), a=3.7, vacuum=4.0)
    atoms.numbers[0] = 79
    atoms.rattle(0.05, seed=3)
    return atoms  # pbc = [True, True, False], full-rank cell


def cluster(seed: int = 4) -> Atoms:
    rng = np.random.default_rng(seed)
    atoms = Atoms("Cu4Au2H2", positions=rng.random((8, 3)) * 4.0)
    _push_apart(atoms)
    return atoms


def _push_apart(atoms: Atoms, min_distance: float = 1.6) -> None:
    """Spread random atoms until no pair is closer than ``min_distance`` (deterministic)."""
    for _ in range(200):
        d = atoms.get_all_distances(mic=atoms.pbc.any())
        np.fill_diagonal(d, np.inf)
        i, j = np.unravel_index(np.argmin(d), d.shape)
        if d[i, j] >= min_distance:
            return
        vec = atoms.get_distance(i, j, mic=atoms.pbc.any(), vector=True)
        atoms.positions[j] += 0.2 * vec / np.linalg.norm(vec)


GEOMETRIES = {
    "alloy": alloy,
    "triclinic": triclinic,
    "tiny_cell": tiny_cell,
    "two_atom_tiny_cell": two_atom_tiny_cell,
    "slab": slab,
    "cluster": cluster,
}
PERIODIC_GEOMETRIES = ["alloy", "triclinic", "tiny_cell", "two_atom_tiny_cell", "slab"]


@pytest.fixture(autouse=True)
def _global_state_is_untouched():
    """Every test checks that nothing changed global state.

    torch's default dtype, thread count and RNG, numpy's global RNG and the environment must
    be as they were: the package never changes them (tests that call code which does, such
    as ASE's optimisers drawing from numpy's global RNG, save and restore it themselves).
    """
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch_rng, numpy_rng = torch.random.get_rng_state(), np.random.get_state()
    environment = environment_of_the_package()
    yield
    assert torch.get_default_dtype() == dtype
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), torch_rng)
    after = np.random.get_state()
    assert after[0] == numpy_rng[0] and np.array_equal(after[1], numpy_rng[1])
    assert after[2:] == numpy_rng[2:], "numpy's global RNG was used"
    assert environment_of_the_package() == environment


@pytest.fixture
def numpy_global_rng_restored():
    """Put numpy's global RNG back: FrechetCellFilter draws from it (scipy's logm, onenormest).

    For tests that call ASE's cell filters directly; the package's own relax_many restores it.
    """
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def environment_of_the_package() -> dict[str, str]:
    """The environment, but pytest's own PYTEST_CURRENT_TEST (it changes with each phase)."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


def emt_frames(count: int, seed: int = 0) -> list[Frame]:
    """Rattled, strained 8-atom Cu/Au cells labelled by EMT (energy, forces, stress)."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 1, 1)
        atoms.numbers[rng.random(len(atoms)) < 0.4] = 79
        atoms.set_cell(atoms.cell * (1 + 0.02 * rng.standard_normal()), scale_atoms=True)
        atoms.rattle(0.1, seed=seed * 1000 + k)
        atoms.calc = EMT()
        atoms.get_stress()
        frames.append(Frame.from_atoms(atoms, "bulk"))
    return frames
