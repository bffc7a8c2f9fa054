"""The package lists every subpackage, and the top-level pretrained/ folder is installed as
``allegro_ase.pretrained`` with its registry."""

from pathlib import Path

import pytest

from allegro_ase import zoo

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "allegro_ase").rglob("__init__.py")
    }
    assert on_disk - set(setuptools["packages"]) == set(), "add them to [tool.setuptools] packages"
    assert setuptools["package-dir"]["allegro_ase.pretrained"] == "pretrained"


def test_shipped_registry_is_the_pretrained_folder():
    assert zoo.shipped_registry_path().resolve() == ROOT / "pretrained" / "registry.json"
