"""Symmetries and consistency on hundreds of random structures (hypothesis).

Random cells (up to strongly skewed triclinic), random pbc, 1-40 atoms of random species,
with very close pairs (down to 0.15 Å) and very distant atoms: the energy is invariant under
rotation, translation, permutation and moving one atom by a lattice vector of a periodic
direction; the forces sum to zero; float32 and float64 weights agree. On up to 60 atoms, both
neighbour-list backends give exactly the pairs and image shifts of a brute-force search.
"""

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import make_model, make_nequip_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from allegro_ase import AllegroCalculator
from allegro_ase.models import with_dtype

SPECIES = (29, 79, 1)  # Cu, Au, H: the test models' types
F64_ATOL = 1e-9  # eV and eV/Å, float64, for sums over up to 40 atoms
F32_RTOL = 2e-4  # float32 against float64 weights, relative to the largest value

MODELS = {
    "allegro": make_model().requires_grad_(False),
    "nequip": make_nequip_model().requires_grad_(False),
}
CALCS = {name: AllegroCalculator(model, device="cpu") for name, model in MODELS.items()}
CALCS32 = {
    name: AllegroCalculator(with_dtype(model, "float32"), device="cpu")
    for name, model in MODELS.items()
}


@st.composite
def structures(draw, max_atoms: int = 40) -> Atoms:
    """A random structure: cell, pbc, species, positions, plus close or distant atoms."""
    n = draw(st.integers(1, max_atoms))
    lengths = draw(st.lists(st.floats(3.0, 12.0), min_size=3, max_size=3))
    tilts = draw(st.lists(st.floats(-0.7, 0.7), min_size=3, max_size=3))
    cell = np.diag(lengths)
    cell[1, 0], cell[2, 0], cell[2, 1] = (t * lengths[0] for t in tilts)  # skewed triclinic
    pbc = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    positions = rng.random((n, 3)) @ cell
    numbers = rng.choice(SPECIES, n)
    extra = draw(st.sampled_from(["none", "close", "distant"]))
    if extra == "close" and n > 1:  # a pair 0.15-0.6 Å apart (above min_distance)
        direction = rng.normal(size=3)
        positions[1] = positions[0] + draw(st.floats(0.15, 0.6)) * direction / np.linalg.norm(
            direction
        )
    if extra == "distant" and n > 1 and not all(pbc):  # one atom far out along a vacuum direction
        axis = pbc.index(False)
        positions[-1] += cell[axis] / np.linalg.norm(cell[axis]) * draw(st.floats(50.0, 1e5))
    return Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)


def too_close(atoms: Atoms) -> bool:
    """Whether some pair (incl. images) is closer than the calculator's 0.1 Å guard."""
    if len(atoms) < 2 and not atoms.pbc.any():
        return False
    from allegro_ase.neighbors import neighbor_list

    edge_index, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 0.12)
    return edge_index.shape[1] > 0


def results(calc: AllegroCalculator, atoms: Atoms) -> tuple[float, np.ndarray]:
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces()


@pytest.mark.parametrize("architecture", list(MODELS))
@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(atoms=structures(), data=st.data())
def test_random_structures_respect_symmetries(architecture, atoms, data):
    if too_close(atoms):
        return  # atoms or images on top of each other: refused by design (test_errors_are_clear)
    calc = CALCS[architecture]
    energy, forces = results(calc, atoms)
    assert np.isfinite(energy) and np.isfinite(forces).all()
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=F64_ATOL * len(atoms))

    # rotation + translation (the cell rotates with the atoms)
    rotation = Rotation.random(random_state=data.draw(st.integers(0, 2**31 - 1))).as_matrix()
    moved = atoms.copy()
    moved.positions = atoms.positions @ rotation.T + np.array([1.3, -2.1, 0.7])
    moved.cell = atoms.cell.array @ rotation.T
    energy_moved, forces_moved = results(calc, moved)
    assert energy_moved == pytest.approx(energy, abs=F64_ATOL * max(1, len(atoms)))
    np.testing.assert_allclose(forces_moved, forces @ rotation.T, atol=1e-8)

    # permutation
    order = np.random.default_rng(len(atoms)).permutation(len(atoms))
    energy_perm, forces_perm = results(calc, atoms[order])
    assert energy_perm == pytest.approx(energy, abs=F64_ATOL * max(1, len(atoms)))
    np.testing.assert_allclose(forces_perm, forces[order], atol=1e-8)

    # one atom moved by a lattice vector of a periodic direction
    if atoms.pbc.any():
        shifted = atoms.copy()
        axis = int(np.flatnonzero(atoms.pbc)[0])
        shifted.positions[0] += data.draw(st.sampled_from([-2, -1, 1, 3])) * atoms.cell[axis]
        energy_shift, forces_shift = results(calc, shifted)
        assert energy_shift == pytest.approx(energy, abs=F64_ATOL * max(1, len(atoms)))
        np.testing.assert_allclose(forces_shift, forces, atol=1e-8)

    # float32 weights give the float64 numbers to float32 precision
    energy32, forces32 = results(CALCS32[architecture], atoms)
    scale = max(1.0, abs(energy), np.abs(forces).max(initial=0.0))
    assert abs(energy32 - energy) <= F32_RTOL * scale * max(1, len(atoms))
    np.testing.assert_allclose(forces32, forces, atol=F32_RTOL * scale)


def test_models_are_float64_for_the_symmetry_checks():
    assert all(m.config.dtype == torch.float64 for m in MODELS.values())


def brute_force_pairs(atoms: Atoms, r_max: float) -> set[tuple[int, ...]]:
    """Every (i, j, S) with |x_j - x_i + S cell| < r_max (not i = j at S = 0), by enumeration."""
    cell, pbc = atoms.cell.array, atoms.pbc
    reach = []
    for k in range(3):
        if not pbc[k]:
            reach.append(0)
            continue
        others = cell[[m for m in range(3) if m != k]]
        height = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(*others))
        reach.append(int(np.ceil(r_max / height)) + 1)
    shifts = np.stack(
        np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1
    ).reshape(-1, 3)
    vectors = (
        atoms.positions[None, :, None]
        - atoms.positions[:, None, None]
        + (shifts @ cell)[None, None]
    )  # (i, j, S, 3)
    close = np.linalg.norm(vectors, axis=-1) < r_max
    i, j, s = np.nonzero(close)
    return {
        (a, b, *shifts[c])
        for a, b, c in zip(i.tolist(), j.tolist(), s.tolist(), strict=True)
        if a != b or shifts[c].any()
    }


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(atoms=structures(max_atoms=60))
def test_neighbor_list_backends_equal_brute_force(atoms):
    from allegro_ase.neighbors import neighbor_list

    r_max = 4.0
    expected = brute_force_pairs(atoms, r_max)
    for backend in ("matscipy", "vesin"):
        edge_index, shifts = neighbor_list(
            atoms.positions, atoms.cell.array, atoms.pbc, r_max, backend
        )
        found = {
            (a, b, *s) for (a, b), s in zip(edge_index.T.tolist(), shifts.tolist(), strict=True)
        }
        assert len(found) == edge_index.shape[1], f"{backend}: duplicate edges"
        assert found == expected, backend
