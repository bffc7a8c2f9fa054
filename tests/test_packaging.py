"""The distributions work on their own: the wheel, built from the sdist, installed alone.

``python -m build --no-isolation`` (build and setuptools >= 77 come with the dev extra) makes
the sdist from a copy of the source and then the wheel from the unpacked sdist, so a file
missing from the sdist breaks the wheel too. The wheel is
installed with ``pip install --no-deps --target`` into an empty folder and used by a Python
that sees that folder and the installed dependencies but neither this checkout nor its editable
install (``-S``: no site-packages processing, so the editable finder is never installed; the
working directory is an empty folder). There, offline, every shipped model loads by name and
computes an energy equal to the checkout's, and the wheel's ``allegro-ase`` script lists them
(run in the same process, to import torch once).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

import allegro_ase
from allegro_ase import AllegroCalculator
from allegro_ase.zoo import list_models

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ["allegro_ase", "pretrained", "docs", "examples", "pyproject.toml", "README.md",
          "MANIFEST.in"]  # fmt: skip
SHIPPED = [entry for entry in list_models() if entry.shipped]
ENERGY_TOLERANCE = 1e-6  # eV: the same file, the same dtype, the same code


def probe(species: list[str]) -> Atoms:
    """One atom of each species on a zigzag line, 2 Å apart (every pair within any cutoff)."""
    positions = [[2.0 * k, 0.7 * (k % 2), 0.0] for k in range(len(species))]
    return Atoms(symbols=species, positions=positions)


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> Path:
    """The sdist and the wheel (built from the sdist) of a copy of the source."""
    base = tmp_path_factory.mktemp("packaging")
    source, out = base / "source", base / "dist"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCE:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory) -> Path:
    """The wheel alone, installed into an empty folder."""
    target = tmp_path_factory.mktemp("wheel_only")
    (wheel,) = dists.glob("*.whl")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def run_isolated(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Python with only the wheel's folder and the dependencies' site-packages on its path."""
    # this process's import path without any folder holding an allegro_ase package (the
    # checkout): the standard library and wherever the dependencies are installed (the editable
    # install's finder is not a path entry; -S keeps its .pth file from installing it)
    dependencies = [
        entry for entry in sys.path
        if entry and Path(entry).is_dir() and not (Path(entry) / "allegro_ase").exists()
    ]  # fmt: skip
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "ALLEGRO_ASE_"))
    }
    environment.update(
        PYTHONPATH=os.pathsep.join([str(target), *dependencies]),
        ALLEGRO_ASE_OFFLINE="1",
        ALLEGRO_ASE_CACHE=str(cwd / "cache"),
        OMP_NUM_THREADS="1",
    )
    return subprocess.run(
        [sys.executable, "-S", *args], cwd=cwd, env=environment, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


CHECK = """
import json, runpy, sys
import numpy as np
from ase import Atoms
import allegro_ase
from allegro_ase import AllegroCalculator
from allegro_ase.zoo import list_models, verify

results = {"file": allegro_ase.__file__, "models": {}}
for entry in list_models():
    if not entry.shipped:
        continue
    path = verify(entry)
    species = list(entry.species)
    atoms = Atoms(symbols=species,
                  positions=[[2.0 * k, 0.7 * (k % 2), 0.0] for k in range(len(species))])
    atoms.calc = AllegroCalculator.from_pretrained(entry.name, device="cpu")
    forces = atoms.get_forces()
    assert np.isfinite(forces).all()
    results["models"][entry.name] = {"energy": atoms.get_potential_energy(), "path": str(path)}
print("RESULTS", json.dumps(results), flush=True)

# the wheel's console script, as `allegro-ase models list` runs it (same process: one import)
sys.argv = [sys.argv[1], "models", "list"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as stop:
    sys.exit(stop.code)
"""


@pytest.fixture(scope="module")
def wheel_run(installed, tmp_path_factory) -> tuple[dict, list[str]]:
    """Results of CHECK in a Python that sees only the wheel, and the command's output lines."""
    script = installed / "bin" / "allegro-ase"
    assert script.is_file(), "the wheel installs no allegro-ase script"
    done = run_isolated(installed, tmp_path_factory.mktemp("cwd"), "-c", CHECK, str(script))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    marker = next(k for k, line in enumerate(lines) if line.startswith("RESULTS "))
    return json.loads(lines[marker].removeprefix("RESULTS ")), lines[marker + 1 :]


def test_wheel_alone_loads_every_shipped_model_offline(wheel_run, installed):
    results, _ = wheel_run
    assert Path(results["file"]).is_relative_to(installed)
    assert sorted(results["models"]) == sorted(entry.name for entry in SHIPPED)
    for entry in SHIPPED:
        found = results["models"][entry.name]
        assert Path(found["path"]).is_relative_to(installed / "allegro_ase" / "pretrained")
        atoms = probe(list(entry.species))
        atoms.calc = AllegroCalculator.from_pretrained(entry.name, device="cpu")
        assert np.isclose(found["energy"], atoms.get_potential_energy(), rtol=0,
                          atol=ENERGY_TOLERANCE), entry.name  # fmt: skip


def test_wheel_command_lists_the_shipped_models(wheel_run):
    _, output = wheel_run
    rows = {line.split()[0]: line.split() for line in output[1:] if line.strip()}
    for entry in SHIPPED:
        assert "shipped" in rows[entry.name], output


def test_wheel_holds_the_package_and_its_model_files_only(dists):
    (wheel,) = dists.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for entry in SHIPPED:
        for file in (entry.file, entry.card):
            assert f"allegro_ase/pretrained/{file}" in names
    assert "allegro_ase/pretrained/registry.json" in names
    tops = {name.split("/")[0] for name in names}
    assert tops == {"allegro_ase", f"allegro_ase-{allegro_ase.__version__}.dist-info"}, tops


def test_sdist_holds_the_models_the_guide_and_the_examples(dists):
    (sdist,) = dists.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for entry in SHIPPED:
        for file in (entry.file, entry.card):
            assert f"pretrained/{file}" in names
    expected = {"pretrained/registry.json", "pyproject.toml", "README.md", "docs/README.md",
                "examples/md_nvt.py"}  # fmt: skip
    assert expected <= names, expected - names
    assert not any("__pycache__" in name for name in names)


def test_distributions_pass_twine_check(dists):
    pytest.importorskip("twine", reason="twine comes with the dev extra")
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, sorted(dists.iterdir()))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
