"""Reverse-edge pairs (:func:`allegro_ase.graph.reverse_edge_pairs`) and the models that use them.

NequIP's radial basis and radial MLPs depend only on an edge's length (over a symmetric
per-type-pair cutoff), so they are evaluated once per pair of reverse edges (i, j, S) and
(j, i, -S). The pairing must be exact for every kind of list (cells smaller than the cutoff,
mixed pbc, batches, lists where some reverse edge is missing), and the energies, forces and
stress must be those of the per-edge evaluation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import F64_ATOL, GEOMETRIES, NEQUIP_VARIANTS, build_variant

from allegro_ase import AllegroCalculator
from allegro_ase.graph import edge_vectors, reverse_edge_pairs
from allegro_ase.outputs import compute_outputs, edge_outputs


def check_pairs(edge_index: torch.Tensor, cell_shifts: torch.Tensor) -> tuple[int, int]:
    """Assert the pairing is right; return (edges, pairs)."""
    pair_first, pair_of_edge = reverse_edge_pairs(edge_index, cell_shifts)
    num_edges = edge_index.shape[1]
    assert pair_of_edge.shape == (num_edges,)
    assert torch.equal(pair_first, torch.sort(pair_first).values)
    assert torch.equal(pair_of_edge[pair_first], torch.arange(len(pair_first)))
    members: dict[int, list[int]] = {}
    for edge, pair in enumerate(pair_of_edge.tolist()):
        members.setdefault(pair, []).append(edge)
    edges = {
        (int(i), int(j), *map(int, s)) for (i, j), s in zip(edge_index.T, cell_shifts, strict=True)
    }
    for pair, group in members.items():
        assert group[0] == int(pair_first[pair])
        i, j = edge_index[:, group[0]].tolist()
        shift = cell_shifts[group[0]].round().long().tolist()
        reverse = (j, i, *(-s for s in shift))
        if len(group) == 1:  # only when the list lacks the reverse edge
            assert reverse not in edges
        else:
            assert len(group) == 2
            k = group[1]
            assert (*edge_index[:, k].tolist(), *cell_shifts[k].round().long().tolist()) == reverse
    return num_edges, len(pair_first)


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_every_edge_of_a_full_list_is_paired_with_its_reverse(geometry):
    calc = AllegroCalculator(build_variant("nequip-lmax1-parity-3layers"), device="cpu")
    graph = calc._graph(GEOMETRIES[geometry]())
    num_edges, num_pairs = check_pairs(graph.edge_index, graph.cell_shifts)
    assert 2 * num_pairs == num_edges


def test_a_list_with_missing_reverses_pairs_only_what_is_there():
    calc = AllegroCalculator(build_variant("nequip-lmax1-parity-3layers"), device="cpu")
    graph = calc._graph(GEOMETRIES["tiny_cell"]())
    keep = torch.ones(graph.num_edges, dtype=torch.bool)
    keep[::3] = False  # drop every third edge: their reverses are left alone
    num_edges, num_pairs = check_pairs(graph.edge_index[:, keep], graph.cell_shifts[keep])
    assert num_edges / 2 < num_pairs < num_edges


def test_no_edges_give_no_pairs():
    pair_first, pair_of_edge = reverse_edge_pairs(
        torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 3)
    )
    assert pair_first.shape == pair_of_edge.shape == (0,)


@pytest.mark.parametrize("variant", list(NEQUIP_VARIANTS))
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_nequip_per_pair_equals_per_edge(variant, geometry):
    model = build_variant(variant).requires_grad_(False)
    calc = AllegroCalculator(model, device="cpu")
    graph = calc._graph(GEOMETRIES[geometry]())
    edge_vec = edge_vectors(graph.pos, graph.cell, graph.edge_index, graph.cell_shifts)
    per_edge = edge_outputs(model, edge_vec, graph.edge_index, graph.atom_types)
    per_pair = compute_outputs(model, graph)
    for name in ("energies", "forces", "virial", "atom_virials"):
        want, have = getattr(per_edge, name).detach(), getattr(per_pair, name).detach()
        np.testing.assert_allclose(have, want, rtol=0, atol=F64_ATOL, err_msg=name)


def test_only_symmetric_cutoffs_share_reverse_edges():
    # Cu-Au 3.2 Å but Au-Cu 3.6 Å: an edge and its reverse may have different radial inputs
    asymmetric = build_variant("nequip-lmax1-noparity-3layers-resnet-edge-cutoffs")
    assert not asymmetric.shares_reverse_edges
    assert build_variant("nequip-full-per-layer-zbl").shares_reverse_edges
    assert not build_variant("lmax2-parity-coupled").shares_reverse_edges  # Allegro


def test_nequip_training_per_pair_gives_the_per_edge_loss_gradients(monkeypatch):
    """A force-and-stress loss of a batch, and its gradients by every weight, as per edge."""
    import allegro_ase.training.evaluation as evaluation
    from allegro_ase.conversion import SpeciesMap
    from allegro_ase.datasets import Frame
    from allegro_ase.training import frame_to_graph, join, predict

    model = build_variant("nequip-full-per-layer-zbl")
    assert model.shares_reverse_edges
    structures = [GEOMETRIES[name]() for name in ("alloy", "tiny_cell", "cluster")]
    frames = [
        Frame(a.numbers, a.positions, a.cell.array, a.pbc, 0.0, np.zeros((len(a), 3)))
        for a in structures
    ]
    species = SpeciesMap(list(model.type_names))
    batch = join([frame_to_graph(f, species, model.config.r_max) for f in frames])

    def loss_and_gradients():
        model.zero_grad()
        prediction = predict(model, batch, create_graph=True)
        loss = (prediction.forces**2).sum() + (prediction.virial**2).sum()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    per_pair = loss_and_gradients()
    monkeypatch.setattr(evaluation, "graph_pairs", lambda *args: None)
    per_edge = loss_and_gradients()
    torch.testing.assert_close(per_pair[0], per_edge[0], rtol=1e-12, atol=0)
    for have, want in zip(per_pair[1], per_edge[1], strict=True):
        torch.testing.assert_close(have, want, rtol=1e-9, atol=1e-12)
