"""Find the builder inside a config's wrappers: ``modify``, ``ModelFromCheckpoint``/``Package``.

A fine-tuning run names its model as ``nequip.model.modify`` (a list of model modifiers applied
to an inner model) around a builder or around ``ModelFromCheckpoint``/``ModelFromPackage`` (the
model of another file). Modifiers are of two kinds:

* speed modifiers (``enable_OpenEquivariance``, ``enable_CuEquivarianceContracter``, ...),
  which swap kernels on a GPU but leave every number as it is: ignored, with a log line;
* ``modify_PerTypeScaleShift`` (new per-type energy scales and shifts, the fine-tuning
  recipe's one persistent modifier): applied to the builder arguments. The new values are in
  the file's weights anyway; the trainability flags tell parameters from buffers.

Any other modifier is refused by name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .kinds import NequIPFileError

logger = logging.getLogger(__name__)

MODIFY = "nequip.model.modify"
FROM_FILE = {
    "nequip.model.ModelFromCheckpoint": "checkpoint_path",
    "nequip.model.ModelFromPackage": "package_path",
}
WRAPPERS = {MODIFY, *FROM_FILE}
SPEED_MODIFIERS = {
    "enable_OpenEquivariance",
    "enable_CuEquivariance",
    "enable_CuEquivarianceContracter",
    "enable_TritonContracter",
    "enable_TritonScatter",
}
SCALE_SHIFT_MODIFIER = "modify_PerTypeScaleShift"


def _unresolved(value: Any, where: str = "model") -> list[str]:
    """Config entries still holding an OmegaConf ``${...}`` interpolation."""
    if isinstance(value, str):
        return [f"{where}={value!r}"] if "${" in value else []
    if isinstance(value, Mapping):
        return [bad for k, v in value.items() for bad in _unresolved(v, f"{where}.{k}")]
    if isinstance(value, list | tuple):
        return [bad for k, v in enumerate(value) for bad in _unresolved(v, f"{where}[{k}]")]
    return []


def builder_kwargs(
    section: Any, origin: Path, read_architecture: Callable[[Path], dict[str, Any]]
) -> dict[str, Any]:
    """Return the builder arguments behind a config's ``model`` section, through wrappers.

    Parameters
    ----------
    section : mapping
        The ``model`` section (with ``_target_``).
    origin : Path
        The file it comes from; relative paths of wrapped files are looked up beside it.
    read_architecture : callable
        Returns the builder arguments of another reference file (for ``ModelFrom*``).

    Raises
    ------
    NequIPFileError
        No builder, an unknown modifier, unresolved interpolations, or a wrapped file that
        cannot be found (named in the message).
    """
    if not isinstance(section, Mapping) or "_target_" not in section:
        raise NequIPFileError(f"{origin.name} holds no model builder config (no model._target_).")
    target = section["_target_"]
    if target == MODIFY:
        inner = builder_kwargs(section.get("model"), origin, read_architecture)
        return apply_modifiers(inner, section.get("modifiers") or [], origin)
    if target in FROM_FILE:
        reference = str(section.get(FROM_FILE[target], ""))
        return read_architecture(wrapped_file(reference, target, origin))
    unresolved = _unresolved(section)
    if unresolved:
        raise NequIPFileError(
            f"The model config in {origin.name} still has interpolations that need the training "
            f"run (data statistics) to resolve: {'; '.join(unresolved)}. nequip-train stores "
            "them resolved; re-save the file from a finished nequip-train run."
        )
    return dict(section)


def wrapped_file(reference: str, target: str, origin: Path) -> Path:
    """Find the file a ``ModelFromCheckpoint``/``ModelFromPackage`` names (as given or beside)."""
    if reference.startswith("nequip.net:"):
        from .hub import resolve_path

        return resolve_path(reference)
    candidates = [Path(reference), origin.parent / reference, origin.parent / Path(reference).name]
    for candidate in candidates:
        if reference and candidate.is_file():
            return candidate
    raise NequIPFileError(
        f"The model of {origin.name} is fine-tuned from another file ({target}: "
        f"{reference!r}), and {origin.name} alone does not record the architecture. Put "
        f"{Path(reference).name or 'that file'} beside {origin.name} (or at "
        f"{os.fspath(reference)!r}) and load again, or package the run with `nequip-package "
        "build` and load the .nequip.zip, which holds the whole model."
    )


def apply_modifiers(kwargs: dict[str, Any], modifiers: Any, origin: Path) -> dict[str, Any]:
    """Builder arguments after ``nequip.model.modify``'s modifiers (see the module docstring)."""
    if isinstance(modifiers, Mapping):  # per-model lists; files hold one model
        modifiers = modifiers.get("sole_model", [])
    for modifier in modifiers:
        name = modifier.get("modifier") if isinstance(modifier, Mapping) else modifier
        if name in SPEED_MODIFIERS:
            logger.info("%s: ignoring %s (GPU kernels; same numbers).", origin.name, name)
        elif name == SCALE_SHIFT_MODIFIER:
            kwargs = _modified_scale_shift(kwargs, modifier)
        else:
            raise NequIPFileError(
                f"{origin.name} applies the model modifier {name!r}, which allegro-ase does not "
                f"rebuild (known: {SCALE_SHIFT_MODIFIER} and the speed modifiers "
                f"{sorted(SPEED_MODIFIERS)}). Package it with `nequip-package build` and load "
                "the .nequip.zip, or load a compiled file with allow_compiled=True."
            )
    return kwargs


def _merged(old: Any, new: Any, type_names: list[str]) -> Any:
    if new is None:
        return old
    if not isinstance(new, Mapping):
        return float(new)
    base = old if isinstance(old, Mapping) else dict.fromkeys(type_names, old)
    return {**base, **new}


def _modified_scale_shift(kwargs: dict[str, Any], modifier: Mapping) -> dict[str, Any]:
    names = list(kwargs.get("type_names", []))
    out = dict(kwargs)
    for what in ("scales", "shifts"):
        key = f"per_type_energy_{what}"
        old = kwargs.get(key)
        old = (1.0 if what == "scales" else 0.0) if old is None else old
        out[key] = _merged(old, modifier.get(what), names)
        out[f"{key}_trainable"] = bool(modifier.get(f"{what}_trainable", False))
    return out
