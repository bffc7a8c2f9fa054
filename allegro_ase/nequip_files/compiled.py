"""Compiled reference models (``.nequip.pth`` TorchScript, ``.nequip.pt2`` AOTInductor).

These files are compiled code: TorchScript programs or native shared libraries that run when
loaded or called. They are read only on request (``allow_compiled=True``). Their metadata
(``r_max``, ``type_names``, ``per_edge_type_cutoff`` row = centre type, ``model_dtype``) sets up
the neighbour list, and :class:`CompiledNequIPModel` feeds them the reference's inputs:

================== ========= ======= =======================================================
input              shape     dtype   note
================== ========= ======= =======================================================
``pos``            (N, 3)    float64 contiguous (AOTI gives wrong numbers otherwise, silently)
``edge_index``     (2, E)    int64   row 0 centre, row 1 neighbour
``atom_types``     (N,)      int64
``cell``           (1, 3, 3) float64 zeros for a non-periodic system
``edge_cell_shift`` (E, 3)   float64 integer image counts
================== ========= ======= =======================================================

They return per-atom energies, forces and stress themselves (float64), so they are called by
:class:`~allegro_ase.compiled_calculator.NequIPCompiledCalculator`, not by the autograd path
of :func:`~allegro_ase.outputs.compute_outputs`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..graph import AtomicGraph
from .kinds import NequIPFileError, nequip_file_kind

METADATA_KEYS = ("r_max", "type_names", "num_types", "per_edge_type_cutoff", "model_dtype")
INPUT_KEYS = ("pos", "edge_index", "atom_types", "cell", "edge_cell_shift", "batch", "num_atoms")
# custom-op libraries a .pt2 may need, imported (when installed) before loading it
CUSTOM_OPS_LIBRARIES = ("openequivariance", "cuequivariance_torch")


class CompiledNequIPModel(torch.nn.Module):
    """A compiled reference model behind one call: graph in, energies/forces/stress out.

    Parameters
    ----------
    compiled : callable
        The loaded TorchScript module (dict in, dict out) or AOTI runner (list in, list out).
    kind : str
        ``"torchscript"`` or ``"aotinductor"``.
    metadata : mapping
        The file's metadata strings.
    input_keys, output_keys : sequence of str
        AOTI argument and result order (unused for TorchScript).
    device : torch.device
        Where the compiled model runs.
    """

    def __init__(
        self,
        compiled,
        kind: str,
        metadata: Mapping[str, str],
        input_keys: Sequence[str] = (),
        output_keys: Sequence[str] = (),
        device: torch.device | str = "cpu",
    ):
        super().__init__()
        self.compiled, self.kind = compiled, kind
        self.input_keys, self.output_keys = list(input_keys), list(output_keys)
        self.device = torch.device(device)
        self.metadata = dict(metadata)
        self.type_names = tuple(metadata["type_names"].split())
        self.r_max = float(metadata["r_max"])
        self.model_dtype = metadata.get("model_dtype", "float32")
        self.cutoff_matrix = cutoff_matrix(metadata.get("per_edge_type_cutoff"), self.type_names)
        if self.cutoff_matrix is None:
            self.cutoff_matrix = torch.full((len(self.type_names),) * 2, self.r_max)

    def inputs(self, graph: AtomicGraph) -> dict[str, torch.Tensor]:
        """Build the reference's input dict for ``graph``: contiguous float64/int64 on the device."""

        def ready(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
            tensor = tensor.to(self.device, dtype).contiguous()
            return tensor.clone() if tensor.storage_offset() else tensor

        n = graph.num_atoms
        return {
            "pos": ready(graph.pos, torch.float64),
            "edge_index": ready(graph.edge_index, torch.int64),
            "atom_types": ready(graph.atom_types, torch.int64),
            "cell": ready(graph.cell.reshape(1, 3, 3), torch.float64),
            "edge_cell_shift": ready(graph.cell_shifts, torch.float64),
            "batch": torch.zeros(n, dtype=torch.int64, device=self.device),
            "num_atoms": torch.tensor([n], dtype=torch.int64, device=self.device),
        }

    def forward(self, graph: AtomicGraph) -> dict[str, torch.Tensor]:
        """Evaluate the compiled model.

        Returns
        -------
        dict
            ``energy`` (scalar, eV), ``energies`` (N,) eV, ``forces`` (N, 3) eV/Å and ``stress``
            (3, 3) eV/Å³ in ASE's sign convention (NaN for a cell of zero volume), all float64.
        """
        data = self.inputs(graph)
        if self.kind == "torchscript":
            data.pop("batch"), data.pop("num_atoms")
            out = self.compiled(data)
        else:
            with torch.inference_mode():
                results = self.compiled([data[key] for key in self.input_keys])
            out = dict(zip(self.output_keys, results, strict=True))
        energies = out["atomic_energy"].detach().reshape(-1).to(torch.float64)
        total = out.get("total_energy")
        stress = out.get("stress")
        if stress is None and "virial" in out:  # pair_nequip target: virial = -stress * volume
            stress = -out["virial"].detach().reshape(3, 3) / data["cell"].reshape(3, 3).det().abs()
        return {
            "energy": energies.sum() if total is None else total.detach().reshape(()).double(),
            "energies": energies,
            "forces": out["forces"].detach().reshape(-1, 3).to(torch.float64),
            "stress": None if stress is None else stress.detach().reshape(3, 3).double(),
        }


def cutoff_matrix(text: str | None, type_names: Sequence[str]) -> torch.Tensor | None:
    """(T, T) float64 cutoffs from the metadata's row-major ``"c00 c01 ..."`` (row = centre)."""
    if not text:
        return None
    values = [float(value) for value in text.split()]
    if len(values) != len(type_names) ** 2:
        raise NequIPFileError(
            f"per_edge_type_cutoff has {len(values)} values; {len(type_names)} types need "
            f"{len(type_names) ** 2}."
        )
    return torch.tensor(values, dtype=torch.float64).reshape(len(type_names), -1)


def load_compiled_model(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> CompiledNequIPModel:
    """Load a ``.nequip.pth`` or ``.nequip.pt2`` file (this runs the file's compiled code).

    Parameters
    ----------
    path : path-like
        The compiled model.
    device : torch.device or str
        Where to run it; a ``.pt2`` runs only on the device type it was compiled for.
    """
    path, device = Path(path), torch.device(device)
    if not path.is_file():
        raise FileNotFoundError(f"No such compiled model file: {path}")
    kind = nequip_file_kind(path)
    if kind == "torchscript":
        return _load_torchscript(path, device)
    if kind == "aotinductor":
        return _load_aotinductor(path, device)
    raise NequIPFileError(f"{path.name} is not a compiled model; use load_nequip_model.")


def _load_torchscript(path: Path, device: torch.device) -> CompiledNequIPModel:
    extra = dict.fromkeys(METADATA_KEYS, "")
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as error:  # torch raises RuntimeError and others for damaged files
        raise NequIPFileError(
            f"{path.name} is not a loadable TorchScript model: {str(error).splitlines()[0]}"
        ) from error
    metadata = {key: value.decode() for key, value in extra.items() if value}
    _require_metadata(metadata, path)
    module = torch.jit.freeze(module.eval())
    return CompiledNequIPModel(module, "torchscript", metadata, device=device)


def aotinductor_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Metadata of a ``.nequip.pt2``, read from its JSON member without loading any code."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("wrapper_metadata.json")]
            metadata = json.loads(archive.read(names[0])) if names else {}
            libs = [n for n in archive.namelist() if n.endswith("nequip_custom_ops_libs.txt")]
            if libs:
                metadata["nequip_custom_ops_libs"] = archive.read(libs[0]).decode()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise NequIPFileError(f"{path.name} is not a readable .pt2 archive: {error}") from error
    if not isinstance(metadata, dict):
        raise NequIPFileError(f"{path.name} has unreadable AOTInductor metadata.")
    _require_metadata(metadata, path)
    return {str(key): str(value) for key, value in metadata.items()}


_ISA_RANK = {"DEFAULT": 0, "AVX2": 1, "AVX512": 2}


def _check_runs_here(metadata: Mapping[str, str], path: Path, device: torch.device) -> None:
    compiled_for = metadata.get("AOTI_DEVICE_KEY", "cpu")
    if torch.device(compiled_for).type != device.type:
        raise NequIPFileError(
            f"{path.name} was compiled for {compiled_for!r} and cannot run on {str(device)!r}; "
            f"use device={compiled_for!r}."
        )
    isa = metadata.get("AOTI_CPU_ISA", "").split()
    needed = max((_ISA_RANK.get(token, 0) for token in isa), default=0)
    available = _ISA_RANK.get(torch.backends.cpu.get_cpu_capability().split()[0], 0)
    if device.type == "cpu" and needed > available:
        raise NequIPFileError(
            f"{path.name} was compiled for CPUs with {' '.join(isa)}; this CPU offers "
            f"{torch.backends.cpu.get_cpu_capability()}. Compile it again on this machine."
        )
    inputs = metadata.get("nequip_aoti_inputs", "").split()
    outputs = metadata.get("nequip_aoti_outputs", "").split()
    if (
        set(INPUT_KEYS[:5]) - set(inputs)  # pair_allegro files expect ghost atoms, no cell
        or not set(inputs) <= set(INPUT_KEYS)
        or {"atomic_energy", "forces"} - set(outputs)
    ):
        raise NequIPFileError(
            f"{path.name} takes {inputs or 'unrecorded inputs'} and returns "
            f"{outputs or 'unrecorded outputs'}; allegro-ase calls AOTI models compiled with "
            "nequip >= 0.17 for the ase, batch or pair_nequip targets (inputs pos, edge_index, "
            "atom_types, cell, edge_cell_shift; outputs with atomic_energy and forces), e.g. "
            "`nequip-compile --target ase`."
        )
    for library in metadata.get("nequip_custom_ops_libs", "").split():
        if library not in CUSTOM_OPS_LIBRARIES or importlib.util.find_spec(library) is None:
            raise NequIPFileError(
                f"{path.name} was compiled with custom operators from {library!r}, which must "
                f"be installed (supported: {list(CUSTOM_OPS_LIBRARIES)})."
            )


def _load_aotinductor(path: Path, device: torch.device) -> CompiledNequIPModel:
    metadata = aotinductor_metadata(path)
    _check_runs_here(metadata, path, device)
    for library in metadata.get("nequip_custom_ops_libs", "").split():
        importlib.import_module(library)  # registers its operators before the loader runs
    try:
        runner = torch._inductor.aoti_load_package(str(path))
    except Exception as error:  # the C++ loader raises RuntimeError and others
        raise NequIPFileError(
            f"{path.name} could not be loaded by this torch ({torch.__version__}): "
            f"{str(error).splitlines()[0]}. AOTInductor files only load with the torch "
            "version, device type and CPU/GPU architecture they were compiled for; compile it "
            "again here, or load the .nequip.zip or .ckpt with AllegroCalculator.from_nequip."
        ) from error
    inputs = metadata["nequip_aoti_inputs"].split()
    outputs = metadata["nequip_aoti_outputs"].split()
    return CompiledNequIPModel(runner, "aotinductor", metadata, inputs, outputs, device)


def _require_metadata(metadata: Mapping[str, str], path: Path) -> None:
    missing = [key for key in ("r_max", "type_names") if not metadata.get(key)]
    if missing:
        raise NequIPFileError(
            f"{path.name} lacks the metadata {missing} that nequip-compile writes; it is not a "
            "nequip >= 0.7 compiled model (legacy nequip-deploy files are not supported)."
        )
