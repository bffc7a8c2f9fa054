r"""torch-sim integration: Allegro and NequIP models as a torch-sim ``ModelInterface``.

:class:`AllegroTorchSimModel` evaluates a whole torch-sim ``SimState`` (many systems, one
``system_idx``) in **one** model call: the graphs of all systems are joined into one graph
with disjoint atoms, and one backward pass gives every system's forces and virial.

Conventions at the torch-sim boundary (torch-sim ``SimState``, checked against torch-sim's
MACE and Lennard-Jones models):

======================= =============== ====================================================
torch-sim field         shape           here
======================= =============== ====================================================
``positions``           (N, 3)          Å, any float dtype; the geometry is done in float64
``cell``                (S, 3, 3)       lattice vectors as **columns**; turned into our rows
                                        once (``row_vector_cell``)
``pbc``                 bool or (3,)    one value for all systems (torch-sim < 0.4: a bool,
                                        later a (3,) tensor, so mixed pbc there)
``system_idx``          (N,)            system of each atom
``atomic_numbers``      (N,)            mapped to ``type_names`` by element
output ``energy``       (S,)            eV
output ``forces``       (N, 3)          eV/Å
output ``stress``       (S, 3, 3)       eV/Å³, :math:`\sigma = -W / V`: ASE's sign (positive =
                                        tensile), which torch-sim's integrators and cell
                                        filters expect (its barostat uses
                                        :math:`W = -V (\sigma + P)`)
======================= =============== ====================================================

Outputs come back in the dtype of the state's positions.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

try:
    from torch_sim.models.interface import ModelInterface
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "allegro_ase.torch_sim needs torch-sim: pip install 'allegro-ase[torch-sim]' "
        "(the PyPI package torch-sim-atomistic)."
    ) from error

from .calculator import check_model, resolve_device
from .compile import compile_model
from .conversion import BROKEN_STRUCTURE, SpeciesMap, closest_pair_below
from .io import load_model
from .models import with_dtype
from .neighbors import NEIGHBOR_LIST_BACKENDS, neighbor_list
from .outputs import (
    edge_virials,
    energies_and_edge_gradients,
    forces_from_edge_gradients,
    graph_pairs,
)
from .zoo import resolve


def batch_edges(
    pos: np.ndarray,
    cells: np.ndarray,
    pbc: np.ndarray,
    system_idx: np.ndarray,
    atom_types: np.ndarray,
    r_max: float,
    cutoff_matrix: np.ndarray | None = None,
    backend: str = "matscipy",
) -> tuple[np.ndarray, np.ndarray]:
    """One neighbour list for many systems: each system's own list, joined.

    Parameters
    ----------
    pos : np.ndarray
        (N, 3) positions of all atoms, Å.
    cells : np.ndarray
        (S, 3, 3) cells, rows are lattice vectors (Å).
    pbc : np.ndarray
        (3,) periodicity shared by all systems, or (S, 3) per system.
    system_idx : np.ndarray
        (N,) int system of each atom, in 0 .. S-1.
    atom_types : np.ndarray
        (N,) int64 type indices (used for per-edge-type cutoffs only).
    r_max : float
        Cutoff radius, Å.
    cutoff_matrix : np.ndarray or None
        (T, T) per-edge-type cutoffs (row = centre type); edges at or beyond their pair's
        cutoff are dropped, as the calculator does.
    backend : str
        Neighbour-list backend of :func:`allegro_ase.neighbors.neighbor_list`.

    Returns
    -------
    edge_index : np.ndarray
        (2, E) int64 global atom indices; row 0 is the centre, row 1 the neighbour.
    cell_shifts : np.ndarray
        (E, 3) int64 image shifts in the lattice of the centre's system.
    """
    n_systems = cells.shape[0]
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (n_systems, 3))
    prune = cutoff_matrix is not None and bool((cutoff_matrix < r_max).any())
    edges, shifts = [], []
    for system in range(n_systems):
        atoms = np.flatnonzero(system_idx == system)
        local_edges, local_shifts = neighbor_list(
            pos[atoms], cells[system], pbc[system], r_max, backend
        )
        if prune:
            i, j = local_edges
            vectors = pos[atoms[j]] - pos[atoms[i]] + local_shifts @ cells[system]
            types = atom_types[atoms]
            keep = np.linalg.norm(vectors, axis=1) < cutoff_matrix[types[i], types[j]]
            local_edges, local_shifts = local_edges[:, keep], local_shifts[keep]
        edges.append(atoms[local_edges])
        shifts.append(local_shifts)
    return np.concatenate(edges, axis=1), np.concatenate(shifts, axis=0)


def batch_edge_vectors(
    pos: torch.Tensor,
    cells: torch.Tensor,
    system_idx: torch.Tensor,
    edge_index: torch.Tensor,
    cell_shifts: torch.Tensor,
) -> torch.Tensor:
    r"""(E, 3) edge vectors :math:`r_{ij} = x_j - x_i + S_{ij} \cdot \mathrm{cell}_{b(i)}`, Å.

    ``pos`` (N, 3), ``cells`` (S, 3, 3) with lattice vectors as rows, ``system_idx`` (N,),
    ``edge_index`` (2, E), ``cell_shifts`` (E, 3); the result has the dtype of ``pos``.
    """
    center, neighbor = edge_index
    edge_cells = cells.to(pos.dtype)[system_idx[center]]
    offsets = torch.einsum("ek,ekl->el", cell_shifts.to(pos.dtype), edge_cells)
    return pos[neighbor] - pos[center] + offsets


class AllegroTorchSimModel(ModelInterface):
    """An energy model of this package as a torch-sim ``ModelInterface``.

    Positions, cell, edge vectors and all outputs are float64 (``self.dtype``, the dtype
    torch-sim gives its states); the weights are float32 or float64 (``dtype=``).

    Parameters
    ----------
    model : torch.nn.Module
        An energy model of this package (:class:`~allegro_ase.models.AllegroModel` or
        :class:`~allegro_ase.models.NequIPModel`). It is not modified: if it has another
        dtype or trainable parameters, a frozen copy is used.
    device : str or torch.device
        ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:K"``.
    dtype : str, torch.dtype or None
        ``"float32"`` or ``"float64"`` for the weights; None keeps the model's.
    compute_forces : bool
        Return ``forces`` (N, 3), eV/Å.
    compute_stress : bool
        Return ``stress`` (S, 3, 3), eV/Å³, ASE sign; every system then needs a periodic
        direction and a cell of non-zero volume.
    neighbor_list : str
        ``"matscipy"`` (default) or ``"vesin"``: exact for triclinic cells, cells smaller
        than ``r_max`` and mixed pbc. Built per system on the CPU (one host copy of the
        positions per call).
    species_to_type_name : mapping or None
        ``{chemical_symbol: type_name}`` when the type names are not chemical symbols.
    min_distance : float
        Atoms closer than this (Å) raise ``ValueError`` naming the system and pair
        (0 turns the check off).
    compile : bool
        Run the model as one AOTInductor program, as ``AllegroCalculator(compile=True)``
        (:mod:`allegro_ase.compile`; compiled once per model and cached).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        compute_forces: bool = True,
        compute_stress: bool = True,
        neighbor_list: str = "matscipy",
        species_to_type_name: Mapping[str, str] | None = None,
        min_distance: float = 0.1,
        compile: bool = False,
    ):
        super().__init__()
        check_model(model)
        if neighbor_list not in NEIGHBOR_LIST_BACKENDS:
            raise ValueError(
                f"neighbor_list={neighbor_list!r} is unknown; choose one of {NEIGHBOR_LIST_BACKENDS}."
            )
        self._device = resolve_device(device)
        self._dtype = torch.float64
        self._compute_forces = bool(compute_forces)
        self._compute_stress = bool(compute_stress)
        self._memory_scales_with = "n_atoms_x_density"
        model = with_dtype(model, dtype) if dtype is not None else model
        if any(parameter.requires_grad for parameter in model.parameters()):
            model = copy.deepcopy(model).requires_grad_(False).eval()
        self.model = model.to(self._device)
        self.neighbor_list = neighbor_list
        self.min_distance = float(min_distance)
        self.species_map = SpeciesMap(self.model.type_names, species_to_type_name)
        self.cutoff_matrix = self.model.cutoff_matrix.detach().cpu().numpy()
        self._types_of: tuple[torch.Tensor, torch.Tensor, np.ndarray] | None = None
        self._compiled = compile_model(self.model, self._device) if compile else None

    @classmethod
    def from_pretrained(cls, name: str, **kwargs) -> AllegroTorchSimModel:
        """Wrap a model of the zoo (:func:`allegro_ase.list_models`) or a nequip.net id.

        ``kwargs`` go to the constructor (``device``, ``dtype``, ``compute_stress``, ...).
        """
        from .nequip_files.hub import is_nequip_net_id

        if is_nequip_net_id(name):
            return cls.from_nequip(name, **kwargs)
        return cls(load_model(resolve(name)).requires_grad_(False), **kwargs)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, sha256: str | None = None, **kwargs
    ) -> AllegroTorchSimModel:
        """Wrap a model file written by :func:`allegro_ase.save_model` (sha256 checked if given)."""
        return cls(load_model(path, sha256=sha256).requires_grad_(False), **kwargs)

    @classmethod
    def from_nequip(cls, path: str | os.PathLike, **kwargs) -> AllegroTorchSimModel:
        """Wrap a reference-framework ``.ckpt`` / ``.nequip.zip`` file or nequip.net id, rebuilt natively."""
        from .nequip_files import COMPILED_KINDS, load_nequip_model, nequip_file_kind
        from .nequip_files.hub import resolve_path

        path = resolve_path(path)
        if nequip_file_kind(path) in COMPILED_KINDS:
            raise ValueError(
                f"{os.fspath(path)!r} is a compiled model; AllegroTorchSimModel needs a model "
                "it can rebuild: the .ckpt or .nequip.zip it was compiled from."
            )
        return cls(load_nequip_model(path).requires_grad_(False), **kwargs)

    @ModelInterface.compute_forces.setter
    def compute_forces(self, value: bool) -> None:
        """Switch the ``forces`` output on or off."""
        self._compute_forces = bool(value)

    @ModelInterface.compute_stress.setter
    def compute_stress(self, value: bool) -> None:
        """Switch the ``stress`` output on or off."""
        self._compute_stress = bool(value)

    def forward(self, state, **kwargs) -> dict[str, torch.Tensor]:
        """Energy (S,), forces (N, 3) and stress (S, 3, 3) of every system of ``state``.

        ``state`` is a torch-sim ``SimState`` (or its dict of fields). Works inside
        ``torch.no_grad()``: autograd is switched on here, locally.
        """
        if isinstance(state, Mapping):
            from torch_sim import SimState

            masses = torch.ones_like(state["positions"][:, 0])  # not used for the energy
            state = SimState(**state, masses=masses)
        with torch.inference_mode(False), torch.enable_grad():
            results = self._evaluate(state)
        out_dtype = state.positions.dtype
        return {key: value.detach().to(out_dtype) for key, value in results.items()}

    def _atom_types(self, atomic_numbers: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """(N,) type indices on the device and on the host; reused while Z is unchanged."""
        if self._types_of is None or not torch.equal(self._types_of[0], atomic_numbers):
            types = self.species_map(atomic_numbers.detach().cpu().numpy())
            self._types_of = (
                atomic_numbers.detach().clone(),
                torch.from_numpy(types).to(self._device),
                types,
            )
        return self._types_of[1], self._types_of[2]

    def _evaluate(self, state) -> dict[str, torch.Tensor]:
        device = self._device
        n_systems = state.cell.shape[0]
        atom_types, atom_types_np = self._atom_types(state.atomic_numbers)
        system_idx = state.system_idx.to(device)
        pos = state.positions.detach().to(device, torch.float64)
        cells = state.cell.detach().to(device, torch.float64).transpose(-1, -2)  # rows
        pbc = torch.as_tensor(state.pbc).detach().cpu().numpy().astype(bool)
        host = torch.cat([pos.reshape(-1), cells.reshape(-1)]).cpu().numpy()  # one copy
        pos_np, cells_np = host[: pos.numel()].reshape(-1, 3), host[pos.numel() :].reshape(-1, 3, 3)
        system_np = system_idx.cpu().numpy()
        volumes = _check_systems(pos_np, cells_np, pbc, system_np, self.compute_stress)
        edge_index, cell_shifts = batch_edges(
            pos_np,
            cells_np,
            pbc,
            system_np,
            atom_types_np,
            self.model.r_max,
            self.cutoff_matrix,
            self.neighbor_list,
        )
        edge_index = torch.from_numpy(edge_index).to(device)
        cell_shifts = torch.from_numpy(cell_shifts.astype(np.float64)).to(device)
        edge_vec = batch_edge_vectors(pos, cells, system_idx, edge_index, cell_shifts)
        self._check_distances(edge_vec, edge_index, system_np)
        edge_vec = edge_vec.detach()
        pairs = graph_pairs(self.model, edge_index, cell_shifts) or ()
        if self._compiled is not None:
            energies, edge_grad = self._compiled(edge_vec, edge_index, atom_types, *pairs)
        elif self.compute_forces or self.compute_stress:
            energies, edge_grad = energies_and_edge_gradients(
                self.model, edge_vec, edge_index, atom_types, *pairs
            )
        else:  # energies only: no backward pass
            energies = self.model(edge_vec, edge_index, atom_types, *pairs).detach()
        energy = torch.zeros(n_systems, dtype=torch.float64, device=device)
        results = {"energy": energy.index_add(0, system_idx, energies)}
        if self.compute_forces:
            results["forces"] = forces_from_edge_gradients(edge_grad, edge_index, pos.shape[0])
        if self.compute_stress:
            virial = torch.zeros(n_systems, 3, 3, dtype=torch.float64, device=device)
            virial = virial.index_add(
                0, system_idx[edge_index[0]], edge_virials(edge_vec, edge_grad)
            )
            volume = torch.as_tensor(volumes, dtype=torch.float64, device=device)
            results["stress"] = -virial / volume.view(-1, 1, 1)
        return results

    def _check_distances(
        self, edge_vec: torch.Tensor, edge_index: torch.Tensor, system_idx: np.ndarray
    ) -> None:
        pair = closest_pair_below(edge_vec, edge_index, self.min_distance)
        if pair is None:
            return
        i, j, distance = pair
        system = int(system_idx[i])
        first = int(np.flatnonzero(system_idx == system)[0])
        raise ValueError(
            f"In system {system}, atoms {i - first} and {j - first} are {distance:.3g} Å apart "
            f"(closer than min_distance = {self.min_distance} Å): {BROKEN_STRUCTURE}. Fix it, "
            "or pass min_distance=0 to compute anyway."
        )


def _check_systems(
    pos: np.ndarray,
    cells: np.ndarray,
    pbc: np.ndarray | Sequence[bool],
    system_idx: np.ndarray,
    need_volume: bool,
) -> np.ndarray:
    """Raise ``ValueError`` for non-finite positions or unusable cells; return (S,) volumes, Å³."""
    n_systems = cells.shape[0]
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (n_systems, 3))
    bad_atoms = np.flatnonzero(~np.isfinite(pos).all(axis=1))
    if len(bad_atoms):
        raise ValueError(
            f"Positions of atoms {bad_atoms[:10].tolist()} (systems "
            f"{sorted(set(system_idx[bad_atoms].tolist()))[:10]}) are NaN or infinite; a "
            "previous step may have diverged (try a smaller timestep)."
        )
    if not np.isfinite(cells).all():
        raise ValueError("The cell contains NaN or infinite values; a cell update diverged.")
    volumes = np.abs(np.linalg.det(cells))
    for system in range(n_systems):
        rows = cells[system][pbc[system]]
        if len(rows) and np.linalg.matrix_rank(rows, tol=1e-8) < len(rows):
            raise ValueError(
                f"System {system}: pbc={pbc[system].tolist()} but the cell vectors of the "
                f"periodic directions are zero or linearly dependent "
                f"(rows {cells[system].round(6).tolist()}). Give it a proper cell."
            )
        if need_volume and (not pbc[system].any() or volumes[system] <= 1e-10):
            raise ValueError(
                f"System {system} has no periodic direction or a cell of zero volume, so its "
                "stress is undefined; construct the model with compute_stress=False for "
                "molecules and clusters."
            )
    return volumes
