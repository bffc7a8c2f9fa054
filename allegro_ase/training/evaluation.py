"""Batched predictions, the training loss, and error metrics against reference labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..outputs import edge_gradients, edge_virials, forces_from_edge_gradients, graph_pairs
from .config import LossConfig
from .data import LabelledGraph, join


@dataclass(frozen=True)
class Prediction:
    """Model outputs for a batch: energy (B,) eV, forces (N, 3) eV/Å, virial (B, 3, 3) eV."""

    energy: torch.Tensor
    forces: torch.Tensor
    virial: torch.Tensor


def predict(model: torch.nn.Module, batch: LabelledGraph, create_graph: bool) -> Prediction:
    """Energies, forces and virials of every frame of ``batch`` from one backward pass."""
    edge_vec = batch.edge_vec.detach().requires_grad_(True)
    pairs = graph_pairs(model, batch.edge_index, batch.cell_shifts) or ()
    atom_energies = model(edge_vec, batch.edge_index, batch.atom_types, *pairs)
    energy = torch.zeros(batch.num_frames, dtype=atom_energies.dtype, device=edge_vec.device)
    energy = energy.index_add(0, batch.batch, atom_energies)
    edge_grad = edge_gradients(energy.sum(), edge_vec, create_graph)
    forces = forces_from_edge_gradients(edge_grad, batch.edge_index, batch.atom_types.shape[0])
    edge_frame = batch.batch[batch.edge_index[0]]
    virial = torch.zeros(batch.num_frames, 3, 3, dtype=edge_grad.dtype, device=edge_vec.device)
    virial = virial.index_add(0, edge_frame, edge_virials(edge_vec, edge_grad))
    return Prediction(energy=energy, forces=forces, virial=virial)


def loss_terms(
    prediction: Prediction, batch: LabelledGraph, weights: LossConfig
) -> dict[str, torch.Tensor]:
    """Mean squared errors of energy per atom, force components and stress, and their sum."""
    num_atoms = batch.num_atoms
    terms = {
        "energy_per_atom": (((prediction.energy - batch.energy) / num_atoms) ** 2).mean(),
        "forces": ((prediction.forces - batch.forces) ** 2).mean(),
    }
    if weights.stress:
        labelled = batch.has_stress
        stress_error = (prediction.virial - batch.virial)[labelled] / batch.volume[
            labelled, None, None
        ]
        terms["stress"] = (stress_error**2).mean() if bool(labelled.any()) else stress_error.sum()
    terms["total"] = sum(getattr(weights, name) * value for name, value in terms.items())
    return terms


class ErrorMetrics:
    """Collects prediction errors batch by batch; ``summary()`` gives MAE and RMSE.

    Units of the summary: meV/atom for energy, meV/Å for forces, meV/Å³ for stress.
    """

    def __init__(self):
        self.reference: dict[str, list[np.ndarray]] = {
            "energy_per_atom": [],
            "forces": [],
            "stress": [],
        }
        self.predicted: dict[str, list[np.ndarray]] = {key: [] for key in self.reference}

    def add(self, prediction: Prediction, batch: LabelledGraph) -> None:
        """Record one batch (its tensors may live on any device)."""
        num_atoms = batch.num_atoms
        pairs = {
            "energy_per_atom": (prediction.energy / num_atoms, batch.energy / num_atoms),
            "forces": (prediction.forces, batch.forces),
        }
        labelled = batch.has_stress
        volume = batch.volume[labelled, None, None]
        pairs["stress"] = (-prediction.virial[labelled] / volume, -batch.virial[labelled] / volume)
        for name, (predicted, reference) in pairs.items():
            self.predicted[name].append(predicted.detach().cpu().numpy().reshape(-1))
            self.reference[name].append(reference.detach().cpu().numpy().reshape(-1))

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Return (reference, predicted) flat arrays of one quantity, in eV units."""
        return np.concatenate(self.reference[name]), np.concatenate(self.predicted[name])

    def summary(self) -> dict[str, float]:
        """MAE and RMSE of each labelled quantity, in meV units."""
        out = {}
        for name in self.reference:
            reference, predicted = self.arrays(name)
            if reference.size:
                error = 1000.0 * (predicted - reference)
                out[f"{name}_mae"] = float(np.abs(error).mean())
                out[f"{name}_rmse"] = float(np.sqrt((error**2).mean()))
        return out


def evaluate(
    model: torch.nn.Module,
    graphs: Sequence[LabelledGraph],
    batch_size: int = 8,
    device: torch.device | str = "cpu",
) -> ErrorMetrics:
    """Errors of ``model`` on ``graphs`` (no training graph is kept)."""
    metrics = ErrorMetrics()
    for start in range(0, len(graphs), batch_size):
        batch = join(graphs[start : start + batch_size]).to(torch.device(device))
        metrics.add(predict(model, batch, create_graph=False), batch)
    return metrics
