"""Energy models and the registry of architectures."""

from __future__ import annotations

from typing import Any

import torch

from .allegro import AllegroModel
from .config import DTYPES, AllegroConfig
from .nequip import NequIPModel
from .nequip_config import NequIPConfig

ARCHITECTURES: dict[str, tuple[type, type[torch.nn.Module]]] = {
    "allegro": (AllegroConfig, AllegroModel),
    "nequip": (NequIPConfig, NequIPModel),
}


def architecture_of(model: torch.nn.Module) -> str:
    """Registry name of a model's architecture."""
    for name, (_, model_class) in ARCHITECTURES.items():
        if type(model) is model_class:
            return name
    raise TypeError(
        f"{type(model).__name__} is not a model of this package ({list(ARCHITECTURES)})."
    )


def build_model(architecture: str, config: dict[str, Any]) -> torch.nn.Module:
    """Build a freshly initialised model from an architecture name and a config dictionary."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {architecture!r}; known: {list(ARCHITECTURES)}.")
    config_class, model_class = ARCHITECTURES[architecture]
    return model_class(config_class.from_dict(config))


def with_dtype(model: torch.nn.Module, dtype: str | torch.dtype) -> torch.nn.Module:
    """Return ``model`` if it already has ``dtype``, else a copy with weights cast to ``dtype``.

    Float64 quantities (energy shifts and scales, cutoffs, Bessel frequencies) stay float64;
    constants that are not saved (e.g. Clebsch-Gordan coefficients) are recomputed in ``dtype``.
    """
    names = {value: key for key, value in DTYPES.items()}
    name = dtype if isinstance(dtype, str) else names.get(dtype)
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}.")
    if model.config.model_dtype == name:
        return model
    converted = type(model)(model.config.replace(model_dtype=name))
    converted.load_state_dict(model.state_dict())
    return converted.to(next(model.parameters()).device)


__all__ = [
    "ARCHITECTURES",
    "AllegroConfig",
    "AllegroModel",
    "NequIPConfig",
    "NequIPModel",
    "architecture_of",
    "build_model",
    "with_dtype",
]
