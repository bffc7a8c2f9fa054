"""allegro_ase.plots writes the figures it is given, without pyplot, and says what to install."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.spectrum.band_structure import BandStructure

from allegro_ase import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, path


# SVGs are written with svg.fonttype "none" so that their text can be searched.


def test_parity_legend_gives_the_mae_of_each_quantity(tmp_path):
    import matplotlib

    reference = {"energy_per_atom": np.array([0.0, 1.0, 2.0]), "forces": np.zeros((2, 3))}
    predicted = {"energy_per_atom": np.array([0.1, 0.9, 2.1]), "forces": np.full((2, 3), 0.25)}
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        path = plots.parity(reference, predicted, tmp_path / "parity.svg")
    text = path.read_text()
    assert "MAE = 0.1 eV/atom" in text
    assert "MAE = 0.25 eV/Å" in text
    assert_png(plots.parity(reference, predicted, tmp_path / "parity.png"))


def test_parity_draws_only_quantities_in_both_and_refuses_none(tmp_path):
    import matplotlib

    reference = {"stress": np.zeros(6), "energy": np.zeros(2)}
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        text = plots.parity(reference, {"stress": np.ones(6)}, tmp_path / "p.svg").read_text()
    assert "reference stress (eV/Å³)" in text and "reference energy" not in text
    with pytest.raises(
        ValueError, match=r"reference has \['energy', 'stress'\], predicted has \['forces'\]"
    ):
        plots.parity(reference, {"forces": np.zeros(3)}, tmp_path / "none.png")
    with pytest.raises(ValueError, match="'stress' has 6 reference values and 5 predicted"):
        plots.parity(reference, {"stress": np.zeros(5)}, tmp_path / "bad.png")


def test_md_traces_one_panel_per_quantity(tmp_path):
    import matplotlib

    time_fs = np.arange(11) * 2.0
    traces = {
        "temperature (K)": 300 + np.sin(time_fs),
        "energy (eV)": {"E_pot": -np.ones(11), "E_tot": np.zeros(11)},
    }
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        text = plots.md_traces(time_fs, traces, tmp_path / "md.svg", title="test run").read_text()
    for label in ("temperature (K)", "energy (eV)", "E_pot", "E_tot", "time (ps)", "test run"):
        assert label in text
    assert_png(plots.md_traces(time_fs, traces, tmp_path / "md.png"))
    with pytest.raises(ValueError, match="has shape \\(10,\\), the times \\(11,\\)"):
        plots.md_traces(time_fs, {"T (K)": np.zeros(10)}, tmp_path / "bad.png")


def test_phonon_bands_with_dos(tmp_path):
    path = bulk("Cu").cell.bandpath("GXWKGL", npoints=60)
    x = np.linspace(0, 1, 60)
    energies = 0.03 * np.abs(np.sin(np.pi * x))[None, :, None] * np.array([0.6, 0.6, 1.0])
    bands = {
        "EMT": BandStructure(path, energies),
        "model": BandStructure(path, energies * 1.01),
    }
    dos = {"EMT": (np.linspace(0, 0.035, 50), np.ones(50))}
    assert_png(plots.phonon_bands(bands, tmp_path / "bands.png", dos))
    other = BandStructure(bulk("Cu").cell.bandpath("GX", npoints=10), energies[:, :10])
    with pytest.raises(ValueError, match="'other' has 10 k-points, the first one 60"):
        plots.phonon_bands({"EMT": bands["EMT"], "other": other}, tmp_path / "bad.png")


def test_neb_band_legend_gives_the_barrier(tmp_path):
    import matplotlib

    images = []
    for x, energy in zip((0.0, 0.5, 1.0, 1.5, 2.0), (-1.0, -0.8, -0.6, -0.8, -1.0), strict=True):
        atoms = Atoms("Au2", positions=[(0, 0, 0), (x, 0, 2.5)])
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((2, 3)))
        images.append(atoms)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        text = plots.neb_band({"EMT": images}, tmp_path / "neb.svg").read_text()
    assert "EMT: 0.400 eV" in text
    assert_png(plots.neb_band({"EMT": images}, tmp_path / "neb.png"))


def test_equation_of_state_legend_gives_the_bulk_modulus(tmp_path):
    import matplotlib
    from ase.eos import birchmurnaghan
    from ase.units import GPa

    volumes = np.linspace(10.0, 13.0, 9)
    energies = birchmurnaghan(volumes, -3.5, 123.4 * GPa, 5.0, 11.5)  # E0, B0, B0', V0
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        text = plots.equation_of_state({"Cu": (volumes, energies)}, tmp_path / "e.svg").read_text()
    assert "Cu: B = 123.4 GPa" in text


def test_plots_leave_pyplot_and_its_figures_alone(tmp_path):
    had_pyplot = "matplotlib.pyplot" in sys.modules
    open_figures = sys.modules["matplotlib.pyplot"].get_fignums() if had_pyplot else None
    plots.parity({"energy": np.zeros(3)}, {"energy": np.ones(3)}, tmp_path / "p.png")
    if had_pyplot:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == open_figures
    else:
        assert "matplotlib.pyplot" not in sys.modules


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'allegro-ase\[plot\]'"):
        plots.md_traces(np.zeros(2), {"T (K)": np.zeros(2)}, tmp_path / "md.png")
