"""Neighbour-list backends give the same edge set as an O(N^2) brute-force reference."""

import itertools

import numpy as np
import pytest
from ase import Atoms
from conftest import GEOMETRIES
from hypothesis import given, settings
from hypothesis import strategies as st

from allegro_ase.neighbors import NEIGHBOR_LIST_BACKENDS, neighbor_list


def brute_force(pos, cell, pbc, r_max):
    """Every (i, j, S) with |pos[j] - pos[i] + S @ cell| < r_max, excluding i == j, S == 0."""
    pbc = np.asarray(pbc)
    ranges = []
    if pbc.any():
        frac = pos @ np.linalg.inv(cell) if pbc.all() else None
    for axis in range(3):
        if not pbc[axis]:
            ranges.append([0])
            continue
        # number of images needed along this axis: plane spacing plus the spread of atoms
        others = [cell[k] for k in range(3) if k != axis]
        normal = np.cross(*others)
        spacing = abs(cell[axis] @ normal) / np.linalg.norm(normal)
        spread = np.ptp(pos @ normal / np.linalg.norm(normal)) if len(pos) else 0.0
        if frac is not None:
            spread = max(spread, np.ptp(frac[:, axis]) * spacing)
        n = int(np.ceil((r_max + spread) / spacing)) + 1
        ranges.append(range(-n, n + 1))
    edges = set()
    for shift in itertools.product(*ranges):
        vectors = pos[None, :, :] - pos[:, None, :] + np.array(shift) @ cell
        close = np.linalg.norm(vectors, axis=-1) < r_max
        for i, j in zip(*np.nonzero(close), strict=True):
            if i != j or any(shift):
                edges.add((int(i), int(j), *shift))
    return edges


def _cases():
    cases = {name: make() for name, make in GEOMETRIES.items()}
    cases["single_atom_cluster"] = Atoms("Cu")
    unwrapped = GEOMETRIES["triclinic"]()
    unwrapped.positions += (
        np.random.default_rng(0).integers(-2, 3, (len(unwrapped), 3)) @ unwrapped.cell.array
    )
    cases["unwrapped_triclinic"] = unwrapped
    wire = GEOMETRIES["alloy"]()
    wire.pbc = [False, True, False]
    cases["wire_mixed_pbc"] = wire
    far = GEOMETRIES["cluster"]()
    far += GEOMETRIES["cluster"]()
    far.positions[len(far) // 2 :] += [3.0e4, -2.0e5, 7.0e3]
    cases["far_apart_clusters"] = far  # the search must not span the empty space between
    slab = GEOMETRIES["slab"]()
    slab.positions[:2, 2] += 5.0e4  # two atoms far above a slab with vacuum
    cases["slab_with_far_adsorbates"] = slab
    return cases


CASES = _cases()


@pytest.mark.parametrize("backend", NEIGHBOR_LIST_BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("r_max", [2.5, 4.0, 6.5])
def test_backend_matches_brute_force(backend, case, r_max):
    atoms = CASES[case]
    edge_index, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, r_max, backend)
    found = {(int(i), int(j), *map(int, s)) for (i, j), s in zip(edge_index.T, shifts, strict=True)}
    assert len(found) == edge_index.shape[1], "duplicate edges"
    assert found == brute_force(atoms.positions, atoms.cell.array, atoms.pbc, r_max)
    assert edge_index.dtype == np.int64 and shifts.dtype == np.int64


@pytest.mark.parametrize("backend", NEIGHBOR_LIST_BACKENDS)
def test_tiny_cutoff_gives_no_edges(backend):
    atoms = GEOMETRIES["alloy"]()
    edge_index, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 0.1, backend)
    assert edge_index.shape == (2, 0) and shifts.shape == (0, 3)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="Unknown neighbour-list backend 'ase'"):
        neighbor_list(np.zeros((1, 3)), np.eye(3), [True] * 3, 2.0, "ase")


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    lengths=st.lists(st.floats(2.0, 6.0), min_size=3, max_size=3),
    tilt=st.lists(st.floats(-0.4, 0.4), min_size=3, max_size=3),
    pbc=st.lists(st.booleans(), min_size=3, max_size=3),
    fractions=st.lists(
        st.lists(st.floats(-1.5, 2.5), min_size=3, max_size=3), min_size=1, max_size=6
    ),
    r_max=st.floats(1.0, 5.0),
    backend=st.sampled_from(NEIGHBOR_LIST_BACKENDS),
)
def test_random_cells_match_brute_force(lengths, tilt, pbc, fractions, r_max, backend):
    """Random triclinic cells, any pbc, unwrapped positions: same edges as brute force."""
    cell = (
        np.diag(lengths)
        + np.array([[0, 0, 0], [tilt[0], 0, 0], [tilt[1], tilt[2], 0]]) * lengths[0]
    )
    pos = np.array(fractions) @ cell
    edge_index, shifts = neighbor_list(pos, cell, pbc, r_max, backend)
    found = {(int(i), int(j), *map(int, s)) for (i, j), s in zip(edge_index.T, shifts, strict=True)}
    assert found == brute_force(pos, cell, pbc, r_max)


@pytest.mark.parametrize("backend", NEIGHBOR_LIST_BACKENDS)
@pytest.mark.parametrize("distance", [1e4, 1e6, 1e9])
def test_isolated_atoms_far_apart_cost_no_memory(backend, distance):
    """Cost follows the atoms, not the empty space between them (once 2.5 GB at 1e4 Å)."""
    import tracemalloc

    pos = np.array([[0.0, 0, 0], [1.0, 0, 0], [distance, 0, 0], [distance, distance, 1.5]])
    tracemalloc.start()
    edge_index, shifts = neighbor_list(pos, np.zeros((3, 3)), [False] * 3, 5.0, backend)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sorted(map(tuple, edge_index.T.tolist())) == [(0, 1), (1, 0)]
    assert peak < 50e6
