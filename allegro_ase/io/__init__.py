"""Model files: our own checkpoint format."""

from .checkpoint import CheckpointError, load_model, save_model

__all__ = ["CheckpointError", "load_model", "save_model"]
