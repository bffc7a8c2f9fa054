"""Statistics of the training set that fix a model's normalisation before training."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .data import LabelledGraph


def per_type_energy_shifts(graphs: Sequence[LabelledGraph], type_names: Sequence[str]) -> dict:
    """Per-type energies (eV) that best explain total energies: least squares of E ≈ Σ_t n_t e_t.

    When every frame has the same composition the system is underdetermined and the
    minimum-norm solution is returned; it still reproduces the mean energy exactly.
    """
    counts = np.stack(
        [np.bincount(g.atom_types.numpy(), minlength=len(type_names)) for g in graphs]
    ).astype(np.float64)
    energies = np.array([float(g.energy.sum()) for g in graphs])
    shifts, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {name: float(value) for name, value in zip(type_names, shifts, strict=False)}


def force_rms(graphs: Sequence[LabelledGraph]) -> float:
    """Root mean square of all force components, eV/Å."""
    squares = sum(float((g.forces**2).sum()) for g in graphs)
    components = sum(g.forces.numel() for g in graphs)
    return float(np.sqrt(squares / components))


def avg_num_neighbors(graphs: Sequence[LabelledGraph]) -> float:
    """Mean number of neighbours within r_max per atom."""
    edges = sum(g.edge_index.shape[1] for g in graphs)
    atoms = sum(g.atom_types.shape[0] for g in graphs)
    return edges / atoms
