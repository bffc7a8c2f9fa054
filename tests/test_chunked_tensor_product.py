"""NequIP's chunked inference path (:class:`allegro_ase.nn.uvu.ChunkedMessageSum`).

NequIP models evaluate their tensor products in chunks of edges when no weight needs
gradients, recomputing each chunk's products in a hand-written backward pass. Energies, forces, stress and per-atom virials must be those of the one-pass
evaluation; training (weights with gradients, create_graph) and export must not take it.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from conftest import F64_ATOL, GEOMETRIES, NEQUIP_VARIANTS, build_variant

import allegro_ase.nn.uvu as uvu
from allegro_ase import AllegroCalculator
from allegro_ase.io.export import exportable
from allegro_ase.outputs import compute_outputs

PROPERTIES = ("energies", "forces", "virial", "atom_virials")


def tensor_products(model) -> list[uvu.UVUTensorProduct]:
    return [m for m in model.modules() if isinstance(m, uvu.UVUTensorProduct)]


def set_chunks(model, chunked: bool, chunk_bytes: int = 2 << 20) -> None:
    for tp in tensor_products(model):
        tp.chunked, tp.chunk_bytes = chunked, chunk_bytes


@pytest.fixture
def count_chunked(monkeypatch):
    calls = []
    apply = uvu.ChunkedMessageSum.apply

    def counted(*args):
        calls.append(args[3])  # the chunk size
        return apply(*args)

    monkeypatch.setattr(uvu.ChunkedMessageSum, "apply", counted)
    return calls


@pytest.mark.parametrize("variant", list(NEQUIP_VARIANTS))
@pytest.mark.parametrize("geometry", [*GEOMETRIES, "single_atom"])
def test_chunks_give_the_one_pass_numbers(variant, geometry, count_chunked):
    model = build_variant(variant).requires_grad_(False)
    calc = AllegroCalculator(model, device="cpu")
    atoms = Atoms("Cu", positions=[[0, 0, 0]]) if geometry == "single_atom" else None
    graph = calc._graph(atoms or GEOMETRIES[geometry]())
    set_chunks(model, False)
    one_pass = compute_outputs(model, graph)
    assert not count_chunked
    set_chunks(model, True, chunk_bytes=1)  # the smallest chunks: 16 edges
    chunked = compute_outputs(model, graph)
    assert count_chunked and set(count_chunked) == {16}
    for name in PROPERTIES:
        want, have = getattr(one_pass, name).detach(), getattr(chunked, name).detach()
        np.testing.assert_allclose(have, want, rtol=0, atol=F64_ATOL, err_msg=name)


def test_training_does_not_take_the_chunked_path(count_chunked):
    model = build_variant("nequip-lmax1-parity-3layers")  # weights with gradients
    set_chunks(model, True, chunk_bytes=1)
    calc = AllegroCalculator(model, device="cpu")  # the calculator freezes its own copy
    graph = calc._graph(GEOMETRIES["alloy"]())
    outputs = compute_outputs(model, graph, create_graph=True)
    assert not count_chunked
    (outputs.forces**2).sum().backward()  # a force loss reaches the weights
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_inference_is_chunked_by_default_and_export_runs_one_pass():
    model = build_variant("nequip-lmax1-parity-3layers")
    assert all(tp.chunked for tp in tensor_products(model))
    assert not any(tp.chunked for tp in tensor_products(exportable(model)))
    assert all(tp.chunked for tp in tensor_products(model))  # the user's model is untouched


def test_chunked_forces_are_the_energy_gradient():
    """Finite differences through the chunked path itself (float64)."""
    model = build_variant("nequip-full-per-layer-zbl").requires_grad_(False)
    set_chunks(model, True, chunk_bytes=1)
    calc = AllegroCalculator(model, device="cpu")
    atoms = GEOMETRIES["triclinic"]()
    atoms.calc = calc
    forces = atoms.get_forces()
    step = 1e-5
    for index, axis in [(0, 0), (1, 2), (len(atoms) - 1, 1)]:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[index, axis] += sign * step
            moved.calc = calc
            energies.append(moved.get_potential_energy())
        derivative = (energies[0] - energies[1]) / (2 * step)
        assert forces[index, axis] == pytest.approx(-derivative, abs=1e-7)


def test_fine_tuning_with_frozen_layers_does_not_take_the_chunked_path(count_chunked):
    """A frozen layer is still differentiated twice when the others learn from forces."""
    model = build_variant("nequip-lmax1-parity-3layers")
    set_chunks(model, True, chunk_bytes=1)
    model.layers[0].requires_grad_(False)
    graph = AllegroCalculator(model, device="cpu")._graph(GEOMETRIES["alloy"]())
    outputs = compute_outputs(model, graph, create_graph=True)
    (outputs.forces**2).sum().backward()
    assert not count_chunked
    assert model.layers[1].conv.edge_mlp.weights[0].grad is not None
