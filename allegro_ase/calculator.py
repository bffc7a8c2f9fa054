"""ASE calculator: Atoms -> graph -> model -> energy, forces and stress in ASE units."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping

import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .conversion import SpeciesMap, atoms_to_graph, check_distances, stress_available
from .io import load_model
from .models import with_dtype
from .neighbors import NEIGHBOR_LIST_BACKENDS
from .outputs import compute_outputs
from .zoo import resolve


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
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator` (e.g. ``label``).

    Notes
    -----
    To share one model among several calculators (NEB images), use ``copy.copy(calc)``:
    the copy has its own state and results but shares the model weights.
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_model(model)
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
        self.species_map = SpeciesMap(self.model.type_names, species_to_type_name)
        self.cutoff_matrix = self.model.cutoff_matrix.detach().cpu()
        self.parameters.update(
            device=str(self.device),
            dtype=self.model.config.model_dtype,
            neighbor_list=neighbor_list,
            type_names=list(self.model.type_names),
            r_max=self.model.r_max,
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
        with torch.inference_mode(False), torch.enable_grad():
            self._calculate(self.atoms, properties)

    def _calculate(self, atoms: Atoms, properties) -> None:
        periodic_volume = stress_available(atoms, properties)
        graph = atoms_to_graph(
            atoms, self.species_map, self.model.r_max, self.cutoff_matrix, self.neighbor_list
        )
        check_distances(graph, self.min_distance, atoms)
        outputs = compute_outputs(self.model, graph.to(self.device))
        n = len(atoms)
        packed = torch.cat(
            [
                outputs.energies.detach().reshape(-1),
                outputs.forces.detach().reshape(-1),
                outputs.virial.detach().reshape(-1),
                outputs.atom_virials.detach().reshape(-1),
            ]
        )
        packed = packed.to("cpu", torch.float64).numpy()  # the one device-to-host copy
        energies, forces = packed[:n], packed[n : 4 * n].reshape(n, 3)
        virial, atom_virials = packed[4 * n : 4 * n + 9], packed[4 * n + 9 :]
        energy = float(energies.sum())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": energies,
            "forces": forces,
        }
        if periodic_volume:
            volume = abs(atoms.cell.volume)
            self.results["stress"] = full_3x3_to_voigt_6_stress(-virial.reshape(3, 3) / volume)
            self.results["stresses"] = full_3x3_to_voigt_6_stress(
                -atom_virials.reshape(n, 3, 3) / volume
            )
