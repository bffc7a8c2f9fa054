"""Labelled frames as graphs with fixed edge vectors, split by seed and joined into batches.

During training the geometry never changes, so each frame's edge vectors are computed once
(float64, Å). Forces and virials then follow from the gradient with respect to them, exactly as
in :mod:`allegro_ase.outputs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..conversion import SpeciesMap, atoms_to_graph
from ..datasets import Frame
from ..graph import edge_vectors


@dataclass(frozen=True)
class LabelledGraph:
    """One frame, or several joined into a batch.

    Attributes
    ----------
    edge_vec : torch.Tensor
        (E, 3) float64 edge vectors, Å.
    edge_index : torch.Tensor
        (2, E) int64 centre, neighbour (indices into the batch's atoms).
    cell_shifts : torch.Tensor
        (E, 3) float64 integer image shifts of the neighbours (they pair reverse edges).
    atom_types : torch.Tensor
        (N,) int64 type indices.
    batch : torch.Tensor
        (N,) int64 frame index of every atom.
    energy : torch.Tensor
        (B,) float64 reference energies, eV.
    forces : torch.Tensor
        (N, 3) float64 reference forces, eV/Å.
    virial : torch.Tensor
        (B, 3, 3) float64 reference virials -stress·V, eV (zeros where not labelled).
    has_stress : torch.Tensor
        (B,) bool, which frames have a stress label.
    volume : torch.Tensor
        (B,) float64 cell volumes, Å³ (1 for frames without stress).
    """

    edge_vec: torch.Tensor
    edge_index: torch.Tensor
    cell_shifts: torch.Tensor
    atom_types: torch.Tensor
    batch: torch.Tensor
    energy: torch.Tensor
    forces: torch.Tensor
    virial: torch.Tensor
    has_stress: torch.Tensor
    volume: torch.Tensor

    @property
    def num_frames(self) -> int:
        """Number of frames B."""
        return self.energy.shape[0]

    @property
    def num_atoms(self) -> torch.Tensor:
        """(B,) atoms per frame, float64."""
        return torch.bincount(self.batch, minlength=self.num_frames).to(torch.float64)

    def to(self, device: torch.device) -> LabelledGraph:
        """Return the same batch on ``device``."""
        return LabelledGraph(**{f: getattr(self, f).to(device) for f in self.__dataclass_fields__})


def frame_to_graph(frame: Frame, species_map: SpeciesMap, r_max: float) -> LabelledGraph:
    """Neighbour list and labels of one frame."""
    graph = atoms_to_graph(frame.to_atoms(), species_map, r_max)
    has_stress = frame.stress is not None
    volume = abs(float(np.linalg.det(frame.cell))) if has_stress else 1.0
    virial = -np.asarray(frame.stress) * volume if has_stress else np.zeros((3, 3))
    return LabelledGraph(
        edge_vec=edge_vectors(graph.pos, graph.cell, graph.edge_index, graph.cell_shifts),
        edge_index=graph.edge_index,
        cell_shifts=graph.cell_shifts,
        atom_types=graph.atom_types,
        batch=torch.zeros(graph.num_atoms, dtype=torch.int64),
        energy=torch.tensor([frame.energy], dtype=torch.float64),
        forces=torch.as_tensor(frame.forces, dtype=torch.float64),
        virial=torch.as_tensor(virial, dtype=torch.float64).unsqueeze(0),
        has_stress=torch.tensor([has_stress]),
        volume=torch.tensor([volume], dtype=torch.float64),
    )


def join(graphs: Sequence[LabelledGraph]) -> LabelledGraph:
    """One disjoint batch graph from several frames (atom and frame indices offset)."""
    atom_offsets = np.cumsum([0] + [g.atom_types.shape[0] for g in graphs[:-1]])
    frame_offsets = np.cumsum([0] + [g.num_frames for g in graphs[:-1]])
    return LabelledGraph(
        edge_vec=torch.cat([g.edge_vec for g in graphs]),
        edge_index=torch.cat(
            [g.edge_index + int(o) for g, o in zip(graphs, atom_offsets, strict=False)], dim=1
        ),
        cell_shifts=torch.cat([g.cell_shifts for g in graphs]),
        atom_types=torch.cat([g.atom_types for g in graphs]),
        batch=torch.cat([g.batch + int(o) for g, o in zip(graphs, frame_offsets, strict=False)]),
        energy=torch.cat([g.energy for g in graphs]),
        forces=torch.cat([g.forces for g in graphs]),
        virial=torch.cat([g.virial for g in graphs]),
        has_stress=torch.cat([g.has_stress for g in graphs]),
        volume=torch.cat([g.volume for g in graphs]),
    )


def split_indices(
    num_frames: int,
    train: float,
    val: float,
    seed: int,
    groups: Sequence[str] | None = None,
) -> dict[str, list[int]]:
    """Disjoint train/val/test frame indices drawn by ``seed``.

    ``train`` and ``val`` are counts when >= 1, else fractions of ``num_frames``; the test set
    is every remaining frame. With ``groups`` (one label per frame, e.g. the MD trajectory it
    came from), whole groups are drawn instead of frames: the groups are shuffled by ``seed``
    and cut where the running frame count comes closest to the train and train + val sizes, so
    no group is in two splits and the sizes are met to within about one group. Each split that
    should hold frames gets at least one group.
    """
    sizes = [int(x) if x >= 1 else int(round(x * num_frames)) for x in (train, val)]
    if sizes[0] < 1 or sum(sizes) > num_frames:
        raise ValueError(
            f"A split of {sizes[0]} train + {sizes[1]} val frames does not fit {num_frames} frames."
        )
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(num_frames)
        cuts = (sizes[0], sum(sizes))
    else:
        order, cuts = _group_order(groups, num_frames, sizes, rng)
    return {
        "train": sorted(order[: cuts[0]].tolist()),
        "val": sorted(order[cuts[0] : cuts[1]].tolist()),
        "test": sorted(order[cuts[1] :].tolist()),
    }


def _group_order(
    groups: Sequence[str], num_frames: int, sizes: list[int], rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int]]:
    """Frame indices ordered group by group (groups shuffled), and the train and val cuts."""
    if len(groups) != num_frames:
        raise ValueError(f"Got {len(groups)} group labels for {num_frames} frames.")
    labels, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    wanted = [True, sizes[1] > 0, sum(sizes) < num_frames]  # train, val, test
    if len(labels) < sum(wanted):
        raise ValueError(
            f"Splitting by group needs at least {sum(wanted)} groups (one each for train"
            f"{', val' if wanted[1] else ''}{', test' if wanted[2] else ''}), but the frames hold "
            f"{len(labels)}: {labels.tolist()[:5]}. Label the frames more finely or split by frame."
        )
    shuffled = rng.permutation(len(labels))
    members = [np.flatnonzero(inverse == g) for g in shuffled]
    ends = np.cumsum([len(m) for m in members])  # frames in the first k + 1 groups

    def cut(target: int, first: int, last: int) -> int:
        """Return the k in [first, last] whose first k groups come closest to ``target`` frames."""
        candidates = np.arange(first, last + 1)
        return int(candidates[np.argmin(np.abs(ends[candidates - 1] - target))])

    g_train = cut(sizes[0], 1, len(labels) - wanted[1] - wanted[2])
    g_val = cut(sum(sizes), g_train + wanted[1], len(labels) - wanted[2]) if wanted[1] else g_train
    if not wanted[2]:
        g_val = len(labels)
    order = np.concatenate(members)
    return order, (int(ends[g_train - 1]), int(ends[g_val - 1]))
