"""Figures for the examples and the evaluation CLI, written straight to a file.

Each function takes plain arrays (or ASE objects that hold them), draws on its own
``matplotlib.figure.Figure`` with the Agg canvas and saves it to ``path``; the format follows the
file suffix (``.png``, ``.pdf``, ``.svg``). pyplot is never imported, so the user's backend, open
figures and rc settings are left alone. matplotlib is imported inside the functions: install it
with ``pip install 'allegro-ase[plot]'``.

Units: energies in eV, forces in eV/Å, stress in eV/Å³, time in fs on input (plotted in ps),
phonon energies in eV on input (plotted in THz).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ase import units

if TYPE_CHECKING:
    from ase import Atoms
    from ase.spectrum.band_structure import BandStructure
    from matplotlib.figure import Figure

__all__ = ["equation_of_state", "md_traces", "neb_band", "parity", "phonon_bands"]

THZ_PER_EV = units._e / units._hplanck / 1e12  # 1 eV / h in THz (about 241.8)

# Units of the keys that ``parity`` knows; any other key is plotted without a unit.
PARITY_UNITS = {
    "energy": "eV",
    "energy_per_atom": "eV/atom",
    "free_energy": "eV",
    "forces": "eV/Å",
    "stress": "eV/Å³",
}


def _figure(nrows: int = 1, ncols: int = 1, **subplots) -> tuple[Figure, np.ndarray]:
    """Make a Figure on an Agg canvas; return it and its axes as an (nrows, ncols) array."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "allegro_ase.plots needs matplotlib, which is not installed: "
            "pip install 'allegro-ase[plot]'"
        ) from err
    figsize = subplots.pop("figsize", (6.0, 4.0))
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **subplots)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def neb_band(bands: Mapping[str, Sequence[Atoms]], path: str | os.PathLike) -> Path:
    """Energy along one or more converged NEB bands, one line per method.

    Parameters
    ----------
    bands
        Label -> the band's images (initial state first), each with a calculator that holds its
        energy and forces (as after an NEB run). The curve through the images is ASE's cubic
        fit with the slopes from the forces (``ase.utils.forcecurve.fit_images``).
    path
        File to write.

    Returns
    -------
    Path
        ``path``. Axes: reaction coordinate (Å) and energy relative to the initial state (eV);
        the legend gives each band's barrier, max(E) - E[0].
    """
    from ase.utils.forcecurve import fit_images

    fig, axes = _figure()
    ax = axes[0, 0]
    for label, images in bands.items():
        fit = fit_images(list(images))
        (line,) = ax.plot(
            fit.fit_path, fit.fit_energies, label=f"{label}: {max(fit.energies):.3f} eV"
        )
        ax.plot(fit.path, fit.energies, "o", color=line.get_color())
    ax.set_xlabel("reaction coordinate (Å)")
    ax.set_ylabel("energy − initial state (eV)")
    ax.legend(title="barrier")
    return _save(fig, path)


def md_traces(
    time_fs: np.ndarray,
    traces: Mapping[str, np.ndarray | Mapping[str, np.ndarray]],
    path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Quantities along an MD run, one panel each, sharing the time axis.

    Parameters
    ----------
    time_fs
        (T,) times of the samples, fs (plotted in ps).
    traces
        Panel label with its unit, e.g. ``"temperature (K)"`` -> (T,) values; or -> a mapping
        line label -> (T,) values to draw several lines in one panel (e.g. E_pot and E_tot).
    path
        File to write.
    title
        Figure title.

    Returns
    -------
    Path
        ``path``.
    """
    time_ps = np.asarray(time_fs, dtype=float) / 1000.0
    fig, axes = _figure(len(traces), 1, sharex=True, figsize=(6.0, 1.2 + 1.6 * len(traces)))
    for ax, (ylabel, values) in zip(axes[:, 0], traces.items(), strict=True):
        lines = values if isinstance(values, Mapping) else {None: values}
        for label, y in lines.items():
            y = np.asarray(y, dtype=float)
            if y.shape != time_ps.shape:
                raise ValueError(
                    f"trace {ylabel!r} {label or ''} has shape {y.shape}, the times {time_ps.shape}: "
                    "give one value per sample time"
                )
            ax.plot(time_ps, y, label=label)
        if not all(label is None for label in lines):
            ax.legend(fontsize="small")
        ax.set_ylabel(ylabel)
    axes[-1, 0].set_xlabel("time (ps)")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def phonon_bands(
    bands: Mapping[str, BandStructure],
    path: str | os.PathLike,
    dos: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> Path:
    """Phonon dispersion of one or more methods on one k-path, with their DOS beside it.

    Parameters
    ----------
    bands
        Label -> band structure from ``ase.phonons.Phonons.get_band_structure`` (energies in
        eV), all on the same path; the first one's special points label the axis.
    path
        File to write.
    dos
        Label -> (energies (M,) eV, weights (M,)), e.g. from
        ``Phonons.get_dos(...).sample_grid(...)``'s ``get_energies()`` and ``get_weights()``.

    Returns
    -------
    Path
        ``path``. Frequencies in THz (1 meV = 0.2418 THz).
    """
    if not bands:
        raise ValueError("phonon_bands needs at least one band structure, got none")
    if dos:
        fig, axes = _figure(1, 2, sharey=True, width_ratios=(3, 1), figsize=(7.0, 4.0))
    else:
        fig, axes = _figure()
    ax = axes[0, 0]
    first = next(iter(bands.values()))
    x, special_x, labels = first.path.get_linear_kpoint_axis()
    for i, (label, bs) in enumerate(bands.items()):
        freqs = bs.energies[0] * THZ_PER_EV  # (K, branches), spin channel 0
        if freqs.shape[0] != len(x):
            raise ValueError(
                f"band structure {label!r} has {freqs.shape[0]} k-points, the first one {len(x)}: "
                "compute all of them on the same path"
            )
        lines = ax.plot(x, freqs, color=f"C{i}", linestyle="-" if i == 0 else "--")
        lines[0].set_label(label)
    ax.set_xticks(special_x, [r"$\Gamma$" if s == "G" else s for s in labels])
    for xs in special_x:
        ax.axvline(xs, color="0.8", linewidth=0.8)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylabel("frequency (THz)")
    ax.legend()
    if dos:
        for i, (label, (energies, weights)) in enumerate(dos.items()):
            axes[0, 1].plot(weights, np.asarray(energies) * THZ_PER_EV, color=f"C{i}", label=label)
        axes[0, 1].set_xlabel("DOS")
        axes[0, 1].set_xticks([])
    return _save(fig, path)


def equation_of_state(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike,
    eos: str = "birchmurnaghan",
) -> Path:
    """Energy-volume points and their fitted equation of state, one curve per method.

    Parameters
    ----------
    curves
        Label -> (volumes (M,) Å³ per atom, energies (M,) eV per atom). Each is fitted with
        ``ase.eos.EquationOfState(volumes, energies, eos)``; the legend gives the bulk modulus.
    path
        File to write.
    eos
        ASE's name of the equation of state.

    Returns
    -------
    Path
        ``path``.
    """
    from ase.eos import EquationOfState

    fig, axes = _figure()
    ax = axes[0, 0]
    for label, (volumes, energies) in curves.items():
        _, _, _, bulk_modulus, v, e, _, _ = EquationOfState(volumes, energies, eos).getplotdata()
        (line,) = ax.plot(v, e, label=f"{label}: B = {bulk_modulus / units.GPa:.1f} GPa")
        ax.plot(volumes, energies, "o", color=line.get_color())
    ax.set_xlabel("volume (Å³/atom)")
    ax.set_ylabel("energy (eV/atom)")
    ax.legend()
    return _save(fig, path)


def parity(
    reference: Mapping[str, np.ndarray],
    predicted: Mapping[str, np.ndarray],
    path: str | os.PathLike,
) -> Path:
    """Predicted against reference values, one panel per quantity, MAE in the legend.

    Parameters
    ----------
    reference, predicted
        Quantity -> values of any shape, the same shape in both (e.g. ``"energy_per_atom"``
        (F,), ``"forces"`` (N, 3), ``"stress"`` (F, 6)); values are flattened. Panels are drawn
        for the keys of ``reference`` that ``predicted`` also has, in ``reference``'s order.
        Known keys get their unit (``PARITY_UNITS``: energy eV, energy_per_atom eV/atom,
        forces eV/Å, stress eV/Å³).
    path
        File to write.

    Returns
    -------
    Path
        ``path``.
    """
    keys = [key for key in reference if key in predicted]
    if not keys:
        raise ValueError(
            f"parity needs a quantity in both dicts; reference has {sorted(reference)}, "
            f"predicted has {sorted(predicted)}"
        )
    fig, axes = _figure(1, len(keys), figsize=(3.6 * len(keys), 3.8))
    for ax, key in zip(axes[0], keys, strict=True):
        ref = np.asarray(reference[key], dtype=float).ravel()
        pred = np.asarray(predicted[key], dtype=float).ravel()
        if ref.shape != pred.shape:
            raise ValueError(
                f"parity: {key!r} has {ref.size} reference values and {pred.size} predicted ones"
            )
        unit = PARITY_UNITS.get(key, "")
        mae = float(np.mean(np.abs(pred - ref)))
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", linewidth=0.8)
        ax.plot(ref, pred, ".", markersize=3, label=f"MAE = {mae:.3g} {unit}".rstrip())
        suffix = f" ({unit})" if unit else ""
        ax.set_xlabel(f"reference {key}{suffix}")
        ax.set_ylabel(f"predicted {key}{suffix}")
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(loc="upper left")
    return _save(fig, path)
