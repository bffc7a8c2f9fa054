"""ASE calculator for compiled reference models (``.nequip.pth`` / ``.nequip.pt2``).

A compiled model computes its forces and stress itself, so this calculator only builds the
graph (same neighbour list and per-edge-type pruning as :class:`AllegroCalculator`), calls
:class:`~allegro_ase.nequip_files.compiled.CompiledNequIPModel` and converts to ASE's shapes.
Build it with ``AllegroCalculator.from_nequip(path, allow_compiled=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .calculator import resolve_device
from .conversion import SpeciesMap, atoms_to_graph, stress_available
from .neighbors import NEIGHBOR_LIST_BACKENDS
from .nequip_files.compiled import CompiledNequIPModel, aotinductor_metadata, load_compiled_model
from .nequip_files.kinds import NequIPFileError, nequip_file_kind


class NequIPCompiledCalculator(Calculator):
    """ASE calculator around a compiled reference model.

    Units follow ASE: eV, eV/Å and Voigt stress (xx, yy, zz, yz, xz, xy) in eV/Å³, available
    for periodic systems with a cell of non-zero volume. Per-atom stresses are not available
    from compiled models.

    Parameters
    ----------
    model : CompiledNequIPModel
        The loaded compiled model (it runs on its own device, in its own dtype).
    neighbor_list : str
        ``"matscipy"`` (default) or ``"vesin"``.
    species_to_type_name : mapping or None
        ``{chemical_symbol: type_name}`` when the type names are not chemical symbols.
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.
    """

    implemented_properties = ("energy", "free_energy", "energies", "forces", "stress")

    def __init__(
        self,
        model: CompiledNequIPModel,
        neighbor_list: str = "matscipy",
        species_to_type_name: Mapping[str, str] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if neighbor_list not in NEIGHBOR_LIST_BACKENDS:
            raise ValueError(
                f"neighbor_list={neighbor_list!r} is unknown; choose one of {NEIGHBOR_LIST_BACKENDS}."
            )
        self.model = model
        self.device = model.device
        self.neighbor_list = neighbor_list
        self.species_map = SpeciesMap(model.type_names, species_to_type_name)
        self.parameters.update(
            device=str(model.device),
            dtype=model.model_dtype,
            compiled=model.kind,
            neighbor_list=neighbor_list,
            type_names=list(model.type_names),
            r_max=model.r_max,
        )

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: tuple[str, ...] = ("energy",),
        system_changes: list[str] = all_changes,
    ) -> None:
        """Compute every implemented property of ``atoms`` in one call of the compiled model."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic_volume = stress_available(atoms, properties)
        graph = atoms_to_graph(
            atoms, self.species_map, self.model.r_max, self.model.cutoff_matrix, self.neighbor_list
        )
        out = self.model(graph)
        energies = out["energies"].cpu().numpy()
        energy = float(out["energy"])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": energies,
            "forces": out["forces"].cpu().numpy(),
        }
        if periodic_volume and out["stress"] is not None:
            stress = out["stress"].to("cpu", torch.float64).numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)


def compiled_calculator(
    path: str | os.PathLike,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    allow_compiled: bool = False,
    **kwargs,
) -> NequIPCompiledCalculator:
    """Load a ``.nequip.pth`` / ``.nequip.pt2`` into a calculator, if compiled code is allowed.

    Parameters are those of :meth:`AllegroCalculator.from_nequip`. With ``device="auto"`` a
    ``.pt2`` runs on the device type it was compiled for (read from its metadata).
    """
    kind = nequip_file_kind(path)
    if not allow_compiled:
        raise NequIPFileError(
            f"{Path(path).name} is a compiled {kind} model: loading it runs compiled code "
            f"({'TorchScript' if kind == 'torchscript' else 'a native shared library'}) from "
            "the file, which can do anything a program can. Load it only if you trust its "
            "source, with allow_compiled=True; otherwise use the model's .nequip.zip or .ckpt, "
            "which allegro-ase rebuilds without running code from the file."
        )
    if str(device) == "auto" and kind == "aotinductor":
        device = aotinductor_metadata(path).get("AOTI_DEVICE_KEY", "cpu")
    model = load_compiled_model(path, resolve_device(device))
    names = {torch.float32: "float32", torch.float64: "float64"}
    wanted = names.get(dtype, dtype) if dtype is not None else model.model_dtype
    if wanted != model.model_dtype:
        raise ValueError(
            f"{Path(path).name} was compiled in {model.model_dtype} and cannot run in {wanted}; "
            "leave dtype=None, or load its .nequip.zip / .ckpt to choose the dtype."
        )
    return NequIPCompiledCalculator(model, **kwargs)
