"""Neighbour lists: positions, cell and pbc in, ``edge_index`` and ``cell_shifts`` out.

Every backend returns the same *full* list (both (i, j) and (j, i)) without self pairs
of zero shift; images of an atom itself (cells smaller than ``r_max``) are included.
Edge vectors follow ``r_ij = pos[j] - pos[i] + cell_shifts @ cell``.

Non-periodic directions are handled by replacing their cell rows with vectors orthogonal
to the periodic ones that enclose all atoms with a margin larger than ``r_max``. The search
then never meets a spurious image, stays O(N), and the shifts along those directions are 0,
so the user's own cell rows remain valid for the edge vectors. Along such a direction, empty
gaps wider than the margin are narrowed to it before the search (no pair across a gap is
within ``r_max`` before or after), so the cost follows the number of atoms, not the distance
between far-apart molecules.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NEIGHBOR_LIST_BACKENDS = ("matscipy", "vesin")


def neighbor_list(
    pos: np.ndarray,
    cell: np.ndarray,
    pbc: Sequence[bool],
    r_max: float,
    backend: str = "matscipy",
) -> tuple[np.ndarray, np.ndarray]:
    """Build a full neighbour list within ``r_max``.

    Parameters
    ----------
    pos : np.ndarray
        (N, 3) positions, Å. Periodic coordinates need not be wrapped.
    cell : np.ndarray
        (3, 3) cell, rows are lattice vectors (Å). Rows of periodic directions must be
        linearly independent; rows of non-periodic directions are ignored.
    pbc : sequence of bool
        (3,) periodicity of each cell direction.
    r_max : float
        Cutoff radius, Å. Pairs with distance strictly below ``r_max`` are kept.
    backend : str
        ``"matscipy"`` (default) or ``"vesin"`` (needs the ``vesin`` extra).

    Returns
    -------
    edge_index : np.ndarray
        (2, E) int64; row 0 is the centre atom i, row 1 the neighbour j.
    cell_shifts : np.ndarray
        (E, 3) int64 image shifts S of the neighbour.
    """
    pos = np.ascontiguousarray(pos, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    search_pos, search_cell = _search_box(pos, np.asarray(cell, dtype=np.float64), pbc, r_max)
    if backend == "matscipy":
        i, j, shifts = _matscipy(search_pos, search_cell, pbc, r_max)
    elif backend == "vesin":
        i, j, shifts = _vesin(search_pos, search_cell, pbc, r_max)
    else:
        raise ValueError(
            f"Unknown neighbour-list backend {backend!r}; choose one of {NEIGHBOR_LIST_BACKENDS}."
        )
    edge_index = np.stack([i, j]).astype(np.int64, copy=False)
    return edge_index, np.ascontiguousarray(shifts, dtype=np.int64)


def _search_box(
    pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, r_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """Positions and a full-rank cell for the search, padded along non-periodic directions.

    Returns
    -------
    search_pos : np.ndarray
        (N, 3) positions moved along the non-periodic directions only: translated, and
        with empty gaps wider than ``r_max + 0.5`` Å narrowed to that width.
    search_cell : np.ndarray
        (3, 3) cell whose periodic rows are the user's and whose other rows are orthogonal
        to them and span the atoms with a margin of ``r_max + 0.5`` Å on each side.
    """
    if pbc.all():
        return pos, cell
    periodic_rows = cell[pbc]
    if len(periodic_rows) == 0:
        complement = np.eye(3)
    else:
        _, _, vt = np.linalg.svd(periodic_rows)
        complement = vt[len(periodic_rows) :]
    search_cell = cell.copy()
    search_pos = pos.copy()
    margin = r_max + 0.5
    for axis, normal in zip(np.flatnonzero(~pbc), complement, strict=True):
        height = pos @ normal if len(pos) else np.zeros(1)
        narrowed = _narrow_gaps(height, margin)
        search_cell[axis] = normal * (narrowed.max() + 2 * margin)
        if len(pos):
            search_pos += np.outer(narrowed + margin - height, normal)
    return search_pos, search_cell


def _narrow_gaps(height: np.ndarray, width: float) -> np.ndarray:
    """Heights (N,) with the lowest at 0 and every gap between neighbours capped at ``width``."""
    order = np.argsort(height, kind="stable")
    steps = np.minimum(np.diff(height[order]), width)
    narrowed = np.empty_like(height)
    narrowed[order] = np.concatenate([[0.0], np.cumsum(steps)])
    return narrowed


def _matscipy(
    pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, r_max: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from matscipy.neighbours import neighbour_list

    return neighbour_list("ijS", positions=pos, cell=cell, pbc=pbc, cutoff=float(r_max))


def _vesin(
    pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, r_max: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        from vesin import NeighborList
    except ImportError as error:
        raise ImportError(
            "The 'vesin' neighbour-list backend needs the vesin package: "
            "pip install 'allegro-ase[vesin]'."
        ) from error
    calculator = NeighborList(cutoff=float(r_max), full_list=True)
    return calculator.compute(pos, cell, pbc, quantities="ijS", copy=True)
