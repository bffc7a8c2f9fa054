"""Allegro and NequIP interatomic potentials behind the ASE Calculator interface."""

__version__ = "0.1.0"

from .calculator import AllegroCalculator  # noqa: E402
from .io import load_model, save_model  # noqa: E402
from .models import AllegroConfig, AllegroModel  # noqa: E402
from .zoo import list_models  # noqa: E402

__all__ = [
    "AllegroCalculator",
    "AllegroConfig",
    "AllegroModel",
    "list_models",
    "load_model",
    "save_model",
]
