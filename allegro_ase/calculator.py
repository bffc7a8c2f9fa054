"""ASE calculator: Atoms -> graph -> model -> energy, forces and stress in ASE units."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from . import memory
from .batch import GraphBatch, join_graphs
from .compile import compile_model
from .conversion import (
    SpeciesMap,
    atoms_to_graph,
    check_distances,
    stress_available,
)
from .graph import AtomicGraph
from .io import load_model
from .models import with_dtype
from .neighbors import NEIGHBOR_LIST_BACKENDS
from .outputs import Outputs, chunked_edge_outputs, edge_outputs, shares_reverse_edges
from .zoo import resolve

# strictly local models on a CPU run in blocks of about this many edges: the block's features
# stay in cache (measured, tutorial-size Allegro, 1 thread: 0.57-0.75x the time of one pass at
# 500-2048 atoms; blocks of 2048-8192 edges within 10 % of each other)
CPU_BLOCK_EDGES = 4096


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:K"`` into an available device.

    Names are case-insensitive; anything else is refused with the accepted names.
    """
    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        hint = " (for a GPU, say 'cuda' or 'cuda:0')" if kind == "gpu" else ""
        raise ValueError(
            f"Unsupported device {str(device)!r}{hint}; use 'auto', 'cpu', 'cuda' or 'cuda:K'."
        )
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device={str(device)!r} was requested but CUDA is not available (no GPU, or a "
                "CPU-only torch build). Use device='cpu', or device='auto' to pick CUDA when present."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device={str(device)!r} was requested but only {torch.cuda.device_count()} CUDA "
                "device(s) exist; choose one of "
                f"{[f'cuda:{k}' for k in range(torch.cuda.device_count())]}."
            )
    return device


def check_model(model: object) -> None:
    """Refuse anything but an energy model of this package, saying which constructor fits."""
    if isinstance(model, str | os.PathLike):
        raise TypeError(
            f"AllegroCalculator takes a model object, not {str(model)!r}. For a model of the "
            "zoo use AllegroCalculator.from_pretrained(name), for a file saved by allegro-ase "
            "from_file(path), for a reference-framework file or nequip.net id from_nequip(...)."
        )
    from .models import ARCHITECTURES

    if not isinstance(model, tuple(model_class for _, model_class in ARCHITECTURES.values())):
        raise TypeError(
            f"AllegroCalculator takes an energy model of allegro-ase (AllegroModel or "
            f"NequIPModel), got {type(model).__module__}.{type(model).__name__}. Build one "
            "from a config, or load one with from_pretrained / from_file / from_nequip."
        )


class AllegroCalculator(Calculator):
    """ASE calculator for Allegro (and NequIP) models of this package.

    Units follow ASE: energies in eV, forces in eV/Å, stress (Voigt xx, yy, zz, yz, xz, xy)
    and per-atom ``stresses`` in eV/Å³, with ``stresses.sum(0) == stress``. Stress is
    available when some direction is periodic and the cell has non-zero volume.

    Parameters
    ----------
    model : torch.nn.Module
        An energy model of this package (e.g. :class:`~allegro_ase.models.AllegroModel`).
        It is not modified: if it has a different dtype or trainable parameters, the
        calculator works on its own frozen copy.
    device : str or torch.device
        ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:K"``.
    dtype : str, torch.dtype or None
        ``"float32"`` or ``"float64"`` for the model weights; None keeps the model's dtype.
    neighbor_list : str
        ``"matscipy"`` (default) or ``"vesin"``.
    species_to_type_name : mapping or None
        ``{chemical_symbol: type_name}`` when the model's type names are not chemical symbols.
    min_distance : float
        Atoms closer than this (Å) raise ``InputError`` naming the pair (default 0.1; 0 turns
        the check off). The ZBL term, where a model has one, is defined down to it.
    num_threads : int or None
        Torch intra-op threads during this calculator's calls (the previous setting is
        restored after each call); None leaves torch's setting alone. On a shared or busy
        machine 1 is often fastest.
    block_edges : int, None or "auto"
        Strictly local models (Allegro) evaluate structures with more than twice this many
        edges in blocks of centre atoms with about this many edges each (exact; faster on a
        CPU, where a block stays in cache). ``"auto"``: 4096 on a CPU, one pass on a GPU;
        None: one pass unless memory requires blocks.
    compile : bool
        Run the model as one program compiled ahead of time with AOTInductor (forward and
        backward; same numbers to rounding, faster on a CPU; see :mod:`allegro_ase.compile`).
        The first use of a model compiles it (0.5-2 minutes, needs a C++ compiler on a CPU)
        and caches the result on disk; a structure of any size then runs without recompiling.
        On a CPU the program is made serial when ``num_threads`` (or, if None, torch's thread
        count at construction) is 1, otherwise multi-threaded; each kind is cached.
    memory_limit : float or None
        Memory (GiB) one call may use; None: what the device reports free. A structure whose
        estimated need exceeds it is evaluated in blocks of centre atoms when the model is
        strictly local (Allegro; results are exact), and otherwise refused with
        :class:`~allegro_ase.memory.InsufficientMemoryError` before anything is allocated.
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator` (e.g. ``label``).

    Notes
    -----
    To share one model among several calculators (NEB images), use ``copy.copy(calc)``:
    the copy has its own state and results but shares the model weights.
    :meth:`calculate_batch` evaluates many structures in one model call;
    :mod:`allegro_ase.images` uses it for NEB and for relaxing many structures.
    """

    implemented_properties = ("energy", "free_energy", "energies", "forces", "stress", "stresses")

    def __init__(
        self,
        model: torch.nn.Module,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        neighbor_list: str = "matscipy",
        species_to_type_name: Mapping[str, str] | None = None,
        min_distance: float = 0.1,
        num_threads: int | None = None,
        block_edges: int | str | None = "auto",
        compile: bool = False,
        memory_limit: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_model(model)
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(
                f"num_threads must be a positive integer or None, got {num_threads!r}."
            )
        if memory_limit is not None and not memory_limit > 0:
            raise ValueError(
                f"memory_limit must be a positive number of GiB, got {memory_limit!r}."
            )
        if neighbor_list not in NEIGHBOR_LIST_BACKENDS:
            raise ValueError(
                f"neighbor_list={neighbor_list!r} is unknown; choose one of {NEIGHBOR_LIST_BACKENDS}."
            )
        self.device = resolve_device(device)
        model = with_dtype(model, dtype) if dtype is not None else model
        if any(parameter.requires_grad for parameter in model.parameters()):
            model = copy.deepcopy(model).requires_grad_(False).eval()
        # a frozen model is used as it is: not even its .training flag changes (the models
        # behave the same in both modes)
        self.model = model.to(self.device)
        self.neighbor_list = neighbor_list
        self.min_distance = float(min_distance)
        self.num_threads = num_threads
        if block_edges == "auto":
            block_edges = CPU_BLOCK_EDGES if self.device.type == "cpu" else None
        if block_edges is not None and (not isinstance(block_edges, int) or block_edges < 1):
            raise ValueError(
                f"block_edges must be 'auto', None or a positive integer, got {block_edges!r}."
            )
        self.block_edges = block_edges if self.model.strictly_local else None
        limit = None if memory_limit is None else float(memory_limit) * memory.GIB
        self.memory = memory.MemoryBudget(self.model, self.device, limit)  # shared by copies
        self.species_map = SpeciesMap(self.model.type_names, species_to_type_name)
        self.cutoff_matrix = self.model.cutoff_matrix.detach().cpu()
        self.compiled = compile_model(self.model, self.device, num_threads) if compile else None
        self.parameters.update(
            device=str(self.device),
            dtype=self.model.config.model_dtype,
            neighbor_list=neighbor_list,
            type_names=list(self.model.type_names),
            r_max=self.model.r_max,
            compiled=bool(compile),
        )

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, sha256: str | None = None, **kwargs
    ) -> AllegroCalculator:
        """Build a calculator for a model file written by :func:`allegro_ase.save_model`.

        Parameters
        ----------
        path : path-like
            The model file; loading never executes code from it.
        sha256 : str or None
            Expected sha256 of the file, verified before loading.
        **kwargs
            Passed to the constructor (``device``, ``dtype``, ``neighbor_list``, ...).
        """
        return cls(load_model(path, sha256=sha256).requires_grad_(False), **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        **kwargs,
    ) -> AllegroCalculator:
        """Build a calculator for a model of the zoo (:func:`allegro_ase.list_models`).

        A shipped model is used without network access; a remote one is downloaded once into
        the cache (see :mod:`allegro_ase.zoo` for ``ALLEGRO_ASE_CACHE`` and
        ``ALLEGRO_ASE_OFFLINE``). The file's sha256 is checked against the registry first.

        Parameters
        ----------
        name : str
            The model's name in the registry, or a nequip.net id
            (``nequip.net:group/name:version``, loaded by :meth:`from_nequip`).
        device : str or torch.device
            As for the constructor.
        dtype : str, torch.dtype or None
            As for the constructor; None keeps the dtype the model was trained in.
        **kwargs
            Passed to the constructor (``neighbor_list``, ...).
        """
        from .nequip_files.hub import is_nequip_net_id

        if is_nequip_net_id(name):
            return cls.from_nequip(name, device=device, dtype=dtype, **kwargs)
        return cls.from_file(resolve(name), device=device, dtype=dtype, **kwargs)

    @classmethod
    def from_nequip(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        allow_compiled: bool = False,
        **kwargs,
    ) -> Calculator:
        """Build a calculator for a file of the reference framework (nequip / nequip-allegro).

        nequip need not be installed. See :mod:`allegro_ase.nequip_files` for how each file
        is read.

        Parameters
        ----------
        path : path-like
            ``.ckpt`` (training checkpoint; the EMA weights when training kept them) or
            ``.nequip.zip`` (``nequip-package``): rebuilt as a native model, no code from the
            file runs. ``.nequip.pth`` / ``.nequip.pt2`` (``nequip-compile``): compiled code,
            run as it is only with ``allow_compiled=True``. Or a nequip.net id
            (``nequip.net:group/name:version``): downloaded once into the cache and checked by
            :mod:`allegro_ase.nequip_files.hub`.
        device : str or torch.device
            As for the constructor; a ``.pt2`` runs on the device type it was compiled for.
        dtype : str, torch.dtype or None
            As for the constructor; compiled models keep the dtype they were compiled in.
        allow_compiled : bool
            Opt in to running the compiled code of a ``.nequip.pth`` or ``.nequip.pt2``.
        **kwargs
            Passed to the calculator (``neighbor_list``, ``species_to_type_name``, ...).

        Returns
        -------
        AllegroCalculator or NequIPCompiledCalculator
            The latter for compiled files.
        """
        from .nequip_files import COMPILED_KINDS, load_nequip_model, nequip_file_kind
        from .nequip_files.hub import resolve_path

        path = resolve_path(path)  # a nequip.net id: its verified local file
        kind = nequip_file_kind(path)
        if kind not in COMPILED_KINDS:
            model = load_nequip_model(path).requires_grad_(False)
            return cls(model, device=device, dtype=dtype, **kwargs)
        from .compiled_calculator import compiled_calculator

        return compiled_calculator(path, device, dtype, allow_compiled, **kwargs)

    def __copy__(self) -> AllegroCalculator:
        """Return a calculator with fresh state that shares this one's model."""
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self.__dict__)
        clone.parameters = copy.copy(self.parameters)
        clone.atoms = None
        clone.results = {}
        return clone

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: tuple[str, ...] = ("energy",),
        system_changes: list[str] = all_changes,
    ) -> None:
        """Compute every implemented property of ``atoms`` in one model call.

        Works inside ``torch.no_grad()`` and ``torch.inference_mode()`` too: forces and stress
        are derivatives, so autograd is switched on here, locally.
        """
        super().calculate(atoms, properties, system_changes)
        with self._torch_settings():
            (self.results,) = self._evaluate([self.atoms], properties)

    def calculate_batch(
        self, images: Sequence[Atoms], properties: Sequence[str] = ("energy", "forces")
    ) -> list[dict]:
        """Results of many structures, evaluated together in as few model calls as fit.

        Parameters
        ----------
        images : sequence of ase.Atoms
            Structures of any sizes, cells and pbc; they are only read.
        properties : sequence of str
            Used as in :meth:`calculate` to decide whether stress is required (an error for a
            structure without a periodic volume); every available property is returned.

        Returns
        -------
        list of dict
            One ``results`` dictionary per structure, the same keys and values (to rounding)
            as a :meth:`calculate` of that structure alone.
        """
        images = list(images)
        for atoms in images:
            if not isinstance(atoms, Atoms):
                raise TypeError(f"calculate_batch takes ase.Atoms objects, got {type(atoms)}.")
        if not images:
            return []
        with self._torch_settings():
            return self._evaluate(images, properties)

    @contextmanager
    def _torch_settings(self) -> Iterator[None]:
        """Autograd on (also inside no_grad/inference_mode) and ``num_threads``, restored after."""
        previous_threads = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        try:
            with torch.inference_mode(False), torch.enable_grad():
                yield
        finally:
            if self.num_threads is not None:
                torch.set_num_threads(previous_threads)

    def _evaluate(self, images: list[Atoms], properties) -> list[dict]:
        """Run atoms -> graphs -> model (batched within the memory budget) -> results dicts."""
        periodic_volume = [stress_available(atoms, properties) for atoms in images]
        graphs = [self._graph(atoms) for atoms in images]
        results: list[dict] = []
        for group in self.memory.groups([(g.num_atoms, g.num_edges) for g in graphs]):
            batch = join_graphs(
                [graphs[k].to(self.device) for k in group], shares_reverse_edges(self.model)
            )
            outputs = self._run_model(batch)
            for k, pieces in zip(group, self._to_numpy(outputs, batch), strict=True):
                results.append(self._results(images[k], *pieces, periodic_volume[k]))
        return results

    def _graph(self, atoms: Atoms) -> AtomicGraph:
        """Check memory for the neighbour list, build it and check the distances."""
        volume = abs(atoms.cell.volume)
        if atoms.pbc.all() and math.isfinite(volume) and volume > 0:
            # (a cell without a usable volume is refused by atoms_to_graph's geometry check)
            self.memory.check_neighbor_list(len(atoms), volume)
        try:
            graph = atoms_to_graph(
                atoms, self.species_map, self.model.r_max, self.cutoff_matrix, self.neighbor_list
            )
        except MemoryError as error:
            raise memory.InsufficientMemoryError(
                f"The neighbour list of {len(atoms)} atoms (r_max {self.model.r_max} Å) ran out "
                "of memory. Split the system, or use fewer atoms."
            ) from error
        check_distances(graph, self.min_distance, atoms)
        return graph

    def _run_model(self, batch: GraphBatch) -> Outputs:
        """One pass over the batch, or blocks of centre atoms (``block_edges``, or memory)."""
        num_atoms, num_edges = batch.atom_types.shape[0], batch.edge_vec.shape[0]
        max_edges = self.memory.max_edges(num_atoms, num_edges, self.block_edges)
        try:
            if max_edges is None:
                return edge_outputs(
                    self.model,
                    batch.edge_vec,
                    batch.edge_index,
                    batch.atom_types,
                    evaluate=self.compiled,
                    pairs=batch.pairs,
                )
            return chunked_edge_outputs(
                self.model,
                batch.edge_vec,
                batch.edge_index,
                batch.atom_types,
                max_edges,
                evaluate=self.compiled,
            )
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as error:
            if isinstance(error, RuntimeError) and "allocate" not in str(error):
                raise
            raise memory.InsufficientMemoryError(
                f"The model call of {num_atoms} atoms and {num_edges} edges ran out of memory "
                f"on {self.device} ({error.__class__.__name__}). Set memory_limit= (GiB) below "
                "what the device really has so that the calculator splits the work, use "
                "float32, or fewer atoms."
            ) from error

    @staticmethod
    def _to_numpy(outputs: Outputs, batch: GraphBatch) -> Iterator[tuple[np.ndarray, ...]]:
        """Per structure: (N,) energies, (N, 3) forces, (N, 3, 3) atom virials, float64."""
        n = outputs.energies.shape[0]
        packed = torch.cat(
            [
                outputs.energies.detach().reshape(-1),
                outputs.forces.detach().reshape(-1),
                outputs.atom_virials.detach().reshape(-1),
            ]
        )
        packed = packed.to("cpu", torch.float64).numpy()  # the one device-to-host copy
        energies = packed[:n]
        forces = packed[n : 4 * n].reshape(n, 3)
        atom_virials = packed[4 * n :].reshape(n, 3, 3)
        bounds = np.cumsum(batch.num_atoms)[:-1]
        return zip(
            np.split(energies, bounds),
            np.split(forces, bounds),
            np.split(atom_virials, bounds),
            strict=True,
        )

    @staticmethod
    def _results(
        atoms: Atoms,
        energies: np.ndarray,
        forces: np.ndarray,
        atom_virials: np.ndarray,
        periodic_volume: bool,
    ) -> dict:
        """ASE results of one structure from its per-atom outputs."""
        energy = float(energies.sum())
        results = {
            "energy": energy,
            "free_energy": energy,
            "energies": energies,
            "forces": forces,
        }
        if periodic_volume:
            volume = abs(atoms.cell.volume)
            results["stress"] = full_3x3_to_voigt_6_stress(-atom_virials.sum(0) / volume)
            results["stresses"] = full_3x3_to_voigt_6_stress(-atom_virials / volume)
        return results
