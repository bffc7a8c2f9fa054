"""From ``ase.Atoms`` to an :class:`~allegro_ase.graph.AtomicGraph`, with input checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import InputError, PropertyNotImplementedError
from ase.data import atomic_numbers, chemical_symbols

from .graph import AtomicGraph, edge_vectors
from .neighbors import neighbor_list


class SpeciesMap:
    """Map chemical symbols to a model's type indices.

    Parameters
    ----------
    type_names : sequence of str
        The model's type names.
    species_to_type_name : mapping or None
        ``{chemical_symbol: type_name}``; None means the type names are chemical symbols.
    """

    def __init__(
        self, type_names: Sequence[str], species_to_type_name: Mapping[str, str] | None = None
    ):
        if species_to_type_name is None:
            not_elements = [name for name in type_names if name not in atomic_numbers]
            if not_elements:
                raise ValueError(
                    f"The model's type names {not_elements} are not chemical symbols; pass "
                    "species_to_type_name={'Cu': 'my_type', ...} to say which element is which."
                )
            species_to_type_name = {name: name for name in type_names}
        self.type_names = tuple(type_names)
        self.species = tuple(species_to_type_name)
        self._lookup = np.full(len(chemical_symbols), -1, dtype=np.int64)
        for symbol, type_name in species_to_type_name.items():
            if symbol not in atomic_numbers or type_name not in self.type_names:
                raise ValueError(
                    f"species_to_type_name maps {symbol!r} to {type_name!r}; keys must be "
                    f"chemical symbols and values among {list(self.type_names)}."
                )
            self._lookup[atomic_numbers[symbol]] = self.type_names.index(type_name)

    def __call__(self, numbers: np.ndarray) -> np.ndarray:
        """Type indices (N,) of atomic numbers (N,); unknown elements raise ``InputError``."""
        numbers = np.asarray(numbers)
        invalid = sorted({int(z) for z in numbers if not 0 < z < len(chemical_symbols)})
        if invalid:
            raise InputError(
                f"Atomic numbers {invalid[:10]} are not elements (1 to "
                f"{len(chemical_symbols) - 1}); check atoms.numbers."
            )
        types = self._lookup[numbers]
        unknown = sorted({chemical_symbols[z] for z in numbers[types < 0]})
        if unknown:
            raise InputError(
                f"This model has no parameters for {', '.join(unknown)}; it knows "
                f"{', '.join(self.species)}. Use a model trained on these elements."
            )
        return types


def check_geometry(atoms: Atoms) -> None:
    """Raise ``InputError`` for an empty system, non-finite positions or an unusable cell."""
    if len(atoms) == 0:
        raise InputError(
            "The Atoms object is empty: there is nothing to compute. Build or read a structure "
            "with atoms first (e.g. ase.build.bulk or ase.io.read)."
        )
    pos = atoms.positions
    bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
    if len(bad):
        raise InputError(
            f"Positions of atoms {bad[:10].tolist()} are NaN or infinite; fix the structure "
            "(a previous step may have diverged)."
        )
    pbc, cell = atoms.pbc, atoms.cell.array
    if not np.isfinite(cell).all():
        raise InputError(
            f"The cell contains NaN or infinite values ({cell.round(6).tolist()}); set a finite "
            "cell with atoms.set_cell(...) (a cell filter or NPT run may have diverged)."
        )
    if pbc.any() and np.linalg.matrix_rank(cell[pbc], tol=1e-8) < pbc.sum():
        raise InputError(
            f"pbc={pbc.tolist()} but the cell vectors of the periodic directions are zero or "
            f"linearly dependent (cell={cell.round(6).tolist()}). Set a proper cell with "
            "atoms.set_cell(...) or switch those directions off with atoms.pbc."
        )


BROKEN_STRUCTURE = (
    "the structure is broken (atoms on top of each other, a wrong cell or unit, or a diverged run)"
)


def closest_pair_below(
    edge_vec: torch.Tensor, edge_index: torch.Tensor, min_distance: float
) -> tuple[int, int, float] | None:
    """(i, j, distance in Å) of the shortest edge if it is shorter than ``min_distance``, else None.

    ``edge_vec`` (E, 3) and ``edge_index`` (2, E); ``min_distance <= 0`` checks nothing.
    """
    if min_distance <= 0 or edge_index.shape[1] == 0:
        return None
    lengths = torch.linalg.vector_norm(edge_vec.detach(), dim=-1)
    closest = int(torch.argmin(lengths))
    distance = float(lengths[closest])
    if distance >= min_distance:
        return None
    i, j = (int(k) for k in edge_index[:, closest])
    return i, j, distance


def check_distances(graph: AtomicGraph, min_distance: float, atoms: Atoms) -> None:
    """Raise ``InputError`` naming the closest pair if two atoms are nearer than ``min_distance``.

    No interatomic potential is meaningful for atoms on top of each other (a learned one gives
    an arbitrary number there, and forces are undefined at zero distance).
    """
    if min_distance <= 0:
        return
    vectors = edge_vectors(graph.pos, graph.cell, graph.edge_index, graph.cell_shifts)
    pair = closest_pair_below(vectors, graph.edge_index, min_distance)
    if pair is None:
        return
    i, j, distance = pair
    symbols = atoms.get_chemical_symbols()
    raise InputError(
        f"Atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are {distance:.3g} Å apart (closer "
        f"than min_distance = {min_distance} Å): {BROKEN_STRUCTURE}. Fix the structure; pass "
        "min_distance=0 to the calculator to compute anyway."
    )


def has_volume(atoms: Atoms) -> bool:
    """Whether the system is periodic in some direction and its cell has non-zero volume."""
    return bool(atoms.pbc.any()) and abs(np.linalg.det(atoms.cell.array)) > 1e-10


def stress_available(atoms: Atoms, properties) -> bool:
    """Whether stress can be computed; raise ``PropertyNotImplementedError`` if it is asked for but not."""
    periodic_volume = has_volume(atoms)
    wants_stress = {"stress", "stresses"} & set(properties)
    if wants_stress and not periodic_volume:
        raise PropertyNotImplementedError(
            f"{' and '.join(sorted(wants_stress))} need a periodic system with a cell of "
            f"non-zero volume (pbc={atoms.pbc.tolist()}, volume={abs(atoms.cell.volume):.3g} "
            "Å³). Stress is undefined for isolated molecules; set pbc and a cell if the "
            "system is meant to be periodic."
        )
    return periodic_volume


def atoms_to_graph(
    atoms: Atoms,
    species_map: SpeciesMap,
    r_max: float,
    cutoff_matrix: torch.Tensor | None = None,
    backend: str = "matscipy",
) -> AtomicGraph:
    """Validate ``atoms`` and build its graph on the CPU (float64 geometry).

    Parameters
    ----------
    atoms : ase.Atoms
        The structure; it is only read.
    species_map : SpeciesMap
        Chemical symbol to type index.
    r_max : float
        Neighbour-list cutoff, Å.
    cutoff_matrix : torch.Tensor or None
        (T, T) per-edge-type cutoffs (row = centre type); edges at or beyond their pair's
        cutoff are dropped (they contribute exactly zero).
    backend : str
        Neighbour-list backend.
    """
    check_geometry(atoms)
    atom_types = species_map(atoms.numbers)
    pos, cell = atoms.positions, atoms.cell.array
    edge_index, shifts = neighbor_list(pos, cell, atoms.pbc, r_max, backend)
    if cutoff_matrix is not None and bool((cutoff_matrix < r_max).any()):
        vectors = pos[edge_index[1]] - pos[edge_index[0]] + shifts @ cell
        pair_cutoff = cutoff_matrix.numpy()[atom_types[edge_index[0]], atom_types[edge_index[1]]]
        keep = np.linalg.norm(vectors, axis=1) < pair_cutoff
        edge_index, shifts = edge_index[:, keep], shifts[keep]
    return AtomicGraph(
        pos=torch.from_numpy(np.array(pos, dtype=np.float64)),
        atom_types=torch.from_numpy(atom_types),
        cell=torch.from_numpy(np.array(cell, dtype=np.float64)),
        edge_index=torch.from_numpy(np.ascontiguousarray(edge_index)),
        cell_shifts=torch.from_numpy(shifts.astype(np.float64)),
    )
