"""Allegro and NequIP interatomic potentials behind the ASE Calculator interface.

The public names are imported on first use (PEP 562), so that ``import allegro_ase.cli``
(the ``allegro-ase`` command, its ``--help``) does not import torch.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {
    "AllegroCalculator": ".calculator",
    "AllegroConfig": ".models",
    "AllegroModel": ".models",
    "list_models": ".zoo",
    "load_model": ".io",
    "save_model": ".io",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    """Import a public name, or a subpackage as ``allegro_ase.io`` once did, on first use."""
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value
        return value
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return import_module(f".{name}", __name__)
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
