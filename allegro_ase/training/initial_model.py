"""The initial model of a fine-tuning run: loading, config checks, refitted shifts, freezing.

Data flow (called by :func:`allegro_ase.training.prepare` and the :class:`Trainer`):

1. :func:`load_initial_model` reads ``init.model`` (zoo name, our ``.pt``, reference ``.ckpt`` /
   ``.nequip.zip`` or a nequip.net id) into a native model;
2. :func:`fine_tuning_config` takes its config and applies the few ``model`` settings that keep
   the pretrained function or add a parameter-free term to it, refusing architecture changes;
3. :func:`check_elements` makes sure the data's elements are among its type names;
4. :func:`refit_shifts` (``init.fit_shifts``) corrects the per-type energy shifts of the
   elements in the training split by least squares;
5. :func:`load_initial_weights` copies the weights into the model built from that config, and
   :func:`freeze_parameters` stops the ``init.freeze`` parameters from training.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ase.data import chemical_symbols

from ..models import architecture_of
from .data import LabelledGraph, join
from .evaluation import predict
from .statistics import per_type_energy_shifts

REFERENCE_SUFFIXES = (".ckpt", ".nequip.zip")
COMPILED_SUFFIXES = (".nequip.pth", ".nequip.pt2")
SHIFTS_KEY = "scale_shift.shifts"
# model settings that may differ from the initial model's: they keep its architecture, and its
# function up to the per-type energy reference (shifts) or the floating-point precision
KEEPS_FUNCTION = (
    "model_dtype",
    "per_type_energy_shifts",
    "per_type_energy_shifts_trainable",
    "per_type_energy_scales_trainable",
)
# model settings that change the function but add no weights: the initial weights load as they
# are and the fine-tuning trains the network around the new term (ZBL repulsion, its cutoff)
PARAMETER_FREE = ("pair_potential",)
ALLOWED = KEEPS_FUNCTION + PARAMETER_FREE


def load_initial_model(source: str) -> torch.nn.Module:
    """Load the model named by ``init.model`` (CPU, eval mode).

    Parameters
    ----------
    source : str
        A nequip.net id (``nequip.net:group/name:version``), a reference-framework file
        (``.ckpt``, ``.nequip.zip``), a model file of this package (``.pt``) or a zoo name.

    Returns
    -------
    torch.nn.Module
        A model of this package (:mod:`allegro_ase.models`).
    """
    from ..io import load_model
    from ..nequip_files import load_nequip_model
    from ..nequip_files.hub import is_nequip_net_id, resolve_path

    if is_nequip_net_id(source) or source.endswith(REFERENCE_SUFFIXES):
        return load_nequip_model(resolve_path(source))
    if source.endswith(COMPILED_SUFFIXES):
        raise ValueError(
            f"init.model {source!r} is a compiled model: it holds code, not trainable weights. "
            "Fine-tune from the .ckpt or .nequip.zip it was compiled from."
        )
    if source.endswith(".pt") or Path(source).is_file():
        if not Path(source).is_file():
            raise FileNotFoundError(f"init.model: no such model file {source!r}.")
        return load_model(source)
    return load_model(_zoo_file(source))


def _zoo_file(name: str) -> Path:
    """Return the verified file of a zoo model; an unknown name says what init.model accepts."""
    from ..zoo import ZooError, get_entry, resolve

    try:
        get_entry(name)
    except ZooError as error:
        raise ValueError(
            f"init.model {name!r} is not a model file (.pt, .ckpt, .nequip.zip), a nequip.net "
            f"id or a zoo model: {error}"
        ) from error
    return resolve(name)


def fine_tuning_config(
    initial: torch.nn.Module, model_section: Mapping[str, Any], fit_shifts: bool
) -> dict[str, Any]:
    """Return the initial model's config with the allowed ``model`` settings applied.

    The per-type energy shifts are read from the model's weights (they may have been trained).

    Parameters
    ----------
    initial : torch.nn.Module
        The initial model.
    model_section : mapping
        The training config's ``model`` section: only :data:`KEEPS_FUNCTION` and
        :data:`PARAMETER_FREE` keys, or keys equal to the initial model's values.
    fit_shifts : bool
        Whether the shifts will be refitted (then the section may not set them).

    Returns
    -------
    dict
        A config dictionary of the initial model's architecture.
    """
    config = initial.config.to_dict()
    config["per_type_energy_shifts"] = per_type_dict(initial.type_names, shifts_of(initial))
    known = {field.name for field in dataclasses.fields(initial.config)}
    unknown = sorted(set(model_section) - known)
    if unknown:
        raise ValueError(
            f"Unknown model keys {unknown} for the initial model ({type(initial).__name__}). "
            f"With init, the model section may set {list(ALLOWED)}; other keys of the "
            "architecture must equal the initial model's values."
        )
    changed = {
        key: value
        for key, value in model_section.items()
        if key not in ALLOWED and _normalised(initial.config, key, value) != config[key]
    }
    if changed:
        details = ", ".join(
            f"{key} = {value!r} (it has {config[key]!r})" for key, value in changed.items()
        )
        raise ValueError(
            f"With init, the architecture and statistics are the initial model's; the model "
            f"section would change them: {details}. Remove these keys; the model section may "
            f"only set {list(ALLOWED)}."
        )
    overrides = {key: value for key, value in model_section.items() if key in ALLOWED}
    if "per_type_energy_shifts" in overrides:
        if fit_shifts:
            raise ValueError(
                "Set either init.fit_shifts or model.per_type_energy_shifts, not both."
            )
        overrides["per_type_energy_shifts"] = _merged_shifts(
            config["per_type_energy_shifts"], overrides["per_type_energy_shifts"]
        )
    return {**config, **overrides}


def _normalised(config: Any, key: str, value: Any) -> Any:
    """Return ``value`` as the config would store it (``"zbl"`` -> its dictionary, ...)."""
    try:
        return config.replace(**{key: value}).to_dict()[key]
    except (TypeError, ValueError):  # not valid for this model at all: certainly a change
        return value


def _merged_shifts(current: dict[str, float], given: float | Mapping[str, float]) -> dict:
    if not isinstance(given, Mapping):
        return dict.fromkeys(current, float(given))
    unknown = sorted(set(given) - set(current))
    if unknown:
        raise ValueError(
            f"model.per_type_energy_shifts names {unknown}, which are not type names of the "
            "initial model."
        )
    return {**current, **{name: float(value) for name, value in given.items()}}


def shifts_of(model: torch.nn.Module) -> torch.Tensor:
    """(T,) float64 per-type energy shifts (eV) of a model, as its weights hold them."""
    return model.scale_shift.shifts.detach().to(torch.float64).cpu()


def per_type_dict(type_names: Sequence[str], values: torch.Tensor) -> dict[str, float]:
    """``{type_name: value}`` of a (T,) tensor."""
    return {name: float(value) for name, value in zip(type_names, values.tolist(), strict=True)}


def check_elements(numbers: Iterable[int], type_names: Sequence[str], source: str) -> None:
    """Refuse data with an element that the initial model has no type for.

    Parameters
    ----------
    numbers : iterable of int
        Atomic numbers found in the data.
    type_names : sequence of str
        The initial model's type names (chemical symbols).
    source : str
        ``init.model``, named in the message.
    """
    symbols = sorted({chemical_symbols[int(z)] for z in numbers}, key=chemical_symbols.index)
    missing = [symbol for symbol in symbols if symbol not in type_names]
    if missing:
        raise ValueError(
            f"The dataset contains {missing}, which the initial model {source!r} has no type "
            f"for; its {len(type_names)} types are {list(type_names)}. Remove those frames or "
            "start from a model that covers these elements."
        )


def refit_shifts(
    model: torch.nn.Module, graphs: Sequence[LabelledGraph], shifts: Mapping[str, float]
) -> dict[str, float]:
    r"""Per-type energy shifts corrected by least squares on the training frames.

    With residuals :math:`r_f = E_f - \hat E_f` of the initial model on frame f and
    :math:`n_{ft}` atoms of type t in it, the correction minimises
    :math:`\sum_f (r_f - \sum_t n_{ft} \Delta_t)^2` (minimum norm when compositions are
    collinear). Types absent from ``graphs`` keep their shift exactly.

    Parameters
    ----------
    model : torch.nn.Module
        The initial model, with the shifts ``shifts``.
    graphs : sequence of LabelledGraph
        The training frames, typed by the model's type names.
    shifts : mapping
        ``{type_name: shift}`` (eV) of ``model``.

    Returns
    -------
    dict
        ``{type_name: shift}`` (eV) for every type name.
    """
    type_names = list(model.type_names)
    residuals = []
    with torch.enable_grad():  # predict() differentiates for forces; only energies are used
        for start in range(0, len(graphs), 8):
            batch = join(graphs[start : start + 8])
            energy = predict(model, batch, create_graph=False).energy.detach()
            residuals.append(batch.energy - energy.to(torch.float64).cpu())
    residual = torch.cat(residuals)
    residual_graphs = [
        dataclasses.replace(graph, energy=residual[k : k + 1]) for k, graph in enumerate(graphs)
    ]
    correction = per_type_energy_shifts(residual_graphs, type_names)
    present = {type_names[t] for t in torch.cat([g.atom_types for g in graphs]).unique().tolist()}
    return {
        name: shifts[name] + correction[name] if name in present else shifts[name]
        for name in type_names
    }


def load_initial_weights(model: torch.nn.Module, initial: torch.nn.Module) -> None:
    """Copy ``initial``'s tensors into ``model`` (same architecture), except the energy shifts.

    ``model`` was built from :func:`fine_tuning_config`, so its shifts are already the ones to
    use (initial, given or refitted); every other tensor, trained scales included, comes from
    ``initial``, cast to ``model``'s dtype.
    """
    state = initial.state_dict()
    state[SHIFTS_KEY] = model.state_dict()[SHIFTS_KEY]
    model.load_state_dict(state, strict=True)


def freeze_parameters(model: torch.nn.Module, patterns: Sequence[str]) -> list[str]:
    """Stop the parameters that match ``patterns`` from training (``requires_grad = False``).

    A pattern matches a parameter name equal to it or starting with it and a dot
    (``layers.0``), or that the pattern matches as a whole regular expression (``.*edge_mlp.*``).

    Returns
    -------
    list of str
        The frozen parameter names, in the model's order.

    Raises
    ------
    ValueError
        When a pattern matches no parameter; the message lists the top-level modules.
    """
    names = [name for name, _ in model.named_parameters()]
    frozen: set[str] = set()
    for pattern in patterns:
        regex = re.compile(pattern)
        matched = {
            name
            for name in names
            if name == pattern or name.startswith(pattern + ".") or regex.fullmatch(name)
        }
        if not matched:
            modules = [name for name, _ in model.named_children()]
            raise ValueError(
                f"init.freeze entry {pattern!r} matches no parameter of the initial model. Its "
                f"top-level modules are {modules}; parameter names look like {names[:3]}."
            )
        frozen |= matched
    for name, parameter in model.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    return [name for name in names if name in frozen]


def architecture_name(initial: torch.nn.Module, requested: str | None) -> str:
    """Return the initial model's architecture; refuse a different ``architecture`` setting."""
    name = architecture_of(initial)
    if requested is not None and requested != name:
        raise ValueError(
            f"architecture is {requested!r} but the initial model is {name!r}; fine-tuning keeps "
            "the initial model's architecture: remove the architecture key."
        )
    return name
