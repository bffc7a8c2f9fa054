"""Export a model as an AOTInductor package for LAMMPS and the reference ASE calculator.

The package (``*.nequip.pt2``) has the interface of :class:`~allegro_ase.io.targets.TargetModule`
for one of :data:`~allegro_ase.io.targets.TARGETS` and the metadata strings that LAMMPS'
``pair_style allegro`` / ``pair_style nequip`` and nequip's ``NequIPCalculator`` read.

Tracing: ``make_fx`` unfolds the force and virial backward pass into one graph, which
``torch.export`` then exports with dynamic N >= 1 and E >= 0 (the reference demands 2 each);
the Allegro tensor products switch to their per-edge gather path for this
(``AllegroModel.group_edges_by_center = False``), whose shapes depend on N and E alone, and
NequIP's tensor products run in one pass (``UVUTensorProduct.chunked = False``).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from .. import __version__
from .targets import TargetModule, example_graph, get_target, target_inputs

SUFFIX = ".nequip.pt2"
# eager vs compiled agreement demanded after compiling, per model dtype
CHECK_ATOL = {"float64": 1e-10, "float32": 5e-5}


def export_metadata(model: torch.nn.Module, target: str) -> dict[str, str]:
    """Return the metadata strings that the pair styles and the reference loader read."""
    names = list(model.type_names)
    if any(not name or " " in name for name in names):
        raise ValueError(f"Type names must be non-empty and without spaces to export: {names}.")
    spec = get_target(target, model)
    metadata = {
        "r_max": str(float(model.r_max)),
        "num_types": str(len(names)),
        "type_names": " ".join(names),
        "model_dtype": model.config.model_dtype,
        "allow_tf32": "0",
        "nequip_aoti_inputs": " ".join(spec.inputs),
        "nequip_aoti_outputs": " ".join(spec.outputs),
        "allegro_ase_version": __version__,
        "allegro_ase_target": target,
    }
    cutoffs = model.cutoff_matrix.detach().cpu().reshape(-1)
    if bool((cutoffs != model.r_max).any()):  # row-major, row = centre type
        metadata["per_edge_type_cutoff"] = " ".join(str(float(c)) for c in cutoffs)
    return metadata


def exportable(model: torch.nn.Module) -> torch.nn.Module:
    """Return a frozen, eval-mode copy of ``model`` whose forward ``torch.export`` can trace."""
    model = copy.deepcopy(model).requires_grad_(False).eval()
    if hasattr(model, "group_edges_by_center"):
        model.group_edges_by_center = False
    for module in model.modules():  # NequIP's chunked inference loops over E: one pass here
        if hasattr(module, "chunked"):
            module.chunked = False
    return model


def export_program(
    model: torch.nn.Module, target: str, inputs: tuple[torch.Tensor, ...] | None = None
) -> torch.export.ExportedProgram:
    """Trace ``model`` with ``target``'s interface into a program with dynamic N and E.

    Parameters
    ----------
    model : torch.nn.Module
        An energy model of this package; it is not modified.
    target : str
        ``"pair_allegro"``, ``"pair_nequip"`` or ``"ase"``.
    inputs : tuple of torch.Tensor or None
        Example inputs (N >= 2 and E >= 2, though the program takes N >= 1 and E >= 0);
        default: :func:`example_graph` on the model's device.
    """
    module = TargetModule(exportable(model), target)
    if inputs is None:
        device = model.cutoff_matrix.device
        inputs = tuple(x.to(device) for x in target_inputs(example_graph(model), target))
    return trace_and_export(module, inputs, get_target(target).inputs)


def trace_and_export(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], names: tuple[str, ...]
) -> torch.export.ExportedProgram:
    """Unfold ``module`` (forward and its autograd backward) into a program with dynamic N, E.

    Parameters
    ----------
    module : torch.nn.Module
        Takes the tensors ``names`` (fields of :mod:`allegro_ase.io.targets`, or ``edge_vec``
        (E, 3)) and returns a tuple of tensors.
    inputs : tuple of torch.Tensor
        Example inputs with N >= 2 and E >= 2; the program takes N >= 1 and E >= 0.
    names : tuple of str
        The name of each input, which says which of its dimensions are N and E.
    """
    from torch.fx.experimental import _config as fx_config
    from torch.fx.experimental.proxy_tensor import make_fx

    # no duck shaping: N or E equal to a weight's size must not become a constant
    with fx_config.patch(use_duck_shape=False):
        traced = make_fx(
            module,
            tracing_mode="symbolic",
            _allow_non_fake_inputs=True,
            _error_on_data_dependent_ops=True,
        )(*[x.clone() for x in inputs])
    nodes = torch.export.Dim("num_nodes", min=1)  # one-atom cells and isolated atoms too
    edges = torch.export.Dim("num_edges", min=0)
    dims = {"pos": {0: nodes}, "edge_index": {1: edges}, "atom_types": {0: nodes}}
    dims |= {"cell": None, "edge_cell_shift": {0: edges}, "edge_vec": {0: edges}}
    pairs = torch.export.Dim("num_pairs", min=0)  # reverse-edge pairs (compile.PAIR_INPUTS)
    dims |= {"pair_first": {0: pairs}, "pair_of_edge": {0: edges}}
    shapes = tuple(dims[name] for name in names)
    return torch.export.export(traced, tuple(inputs), dynamic_shapes=shapes)


def export_model(
    model: torch.nn.Module,
    path: str | os.PathLike,
    target: str,
    device: str | torch.device = "cpu",
    check: bool = True,
) -> Path:
    """Compile ``model`` with AOTInductor into a ``*.nequip.pt2`` package for ``target``.

    Parameters
    ----------
    model : torch.nn.Module
        An energy model of this package; it is not modified.
    path : path-like
        Output file; its name must end in ``.nequip.pt2`` (the pair styles go by the suffix).
    target : str
        ``"pair_allegro"`` (LAMMPS, any number of ranks, Allegro only), ``"pair_nequip"``
        (LAMMPS, one rank) or ``"ase"`` (``NequIPCalculator.from_compiled_model``).
    device : str or torch.device
        Device the package runs on; it only runs there, with the torch that compiled it.
    check : bool
        Compare the compiled package with the eager model on the example graph.

    Returns
    -------
    pathlib.Path
        The written package.
    """
    path = Path(path)
    if not path.name.endswith(SUFFIX):
        raise ValueError(f"The output file must end in {SUFFIX} (LAMMPS needs it), got {path}.")
    if not hasattr(torch._inductor, "aoti_compile_and_package"):
        raise RuntimeError(
            f"Exporting needs torch >= 2.6 (AOTInductor packages); this is torch "
            f"{torch.__version__}. LAMMPS must then be built against the same torch."
        )
    metadata = export_metadata(model, target)
    device = torch.device(device)
    model = exportable(model).to(device)
    inputs = tuple(x.to(device) for x in target_inputs(example_graph(model), target))
    program = export_program(model, target, inputs)
    package = torch._inductor.aoti_compile_and_package(
        program, package_path=str(path), inductor_configs={"aot_inductor.metadata": metadata}
    )
    if check:
        compiled = torch._inductor.aoti_load_package(package)
        expected = TargetModule(model, target)(*inputs)
        with torch.inference_mode():
            got = compiled(list(inputs))
        atol = CHECK_ATOL[model.config.model_dtype]
        for name, want, have in zip(
            metadata["nequip_aoti_outputs"].split(), expected, got, strict=True
        ):
            error = (want.detach() - have).abs().nan_to_num().max().item()
            if error > atol:
                raise RuntimeError(
                    f"The compiled {path.name} differs from the eager model in {name} by "
                    f"{error:.3g} (tolerance {atol:g} for {model.config.model_dtype}); the file "
                    "is unreliable. Please report this with your torch version."
                )
    return Path(package)
