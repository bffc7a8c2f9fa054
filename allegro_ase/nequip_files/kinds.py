"""Which file of the reference framework a path is, by its name, and the error for bad files."""

from __future__ import annotations

import os
from pathlib import Path

KINDS = {
    ".ckpt": "checkpoint",
    ".nequip.zip": "package",
    ".nequip.pth": "torchscript",
    ".nequip.pt2": "aotinductor",
}
COMPILED_KINDS = ("torchscript", "aotinductor")


class NequIPFileError(ValueError):
    """A reference-framework file that cannot be read safely or rebuilt."""


def nequip_file_kind(path: str | os.PathLike) -> str:
    """``"checkpoint"``, ``"package"``, ``"torchscript"`` or ``"aotinductor"``, by file name."""
    name = Path(path).name
    for suffix, kind in KINDS.items():
        if name.endswith(suffix):
            return kind
    raise NequIPFileError(
        f"{name!r} is not a file of the reference framework; expected a name ending in "
        f"{', '.join(KINDS)}. Models saved by allegro-ase load with AllegroCalculator.from_file."
    )
