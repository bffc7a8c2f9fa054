"""The compiled path (``AllegroCalculator(compile=True)``, :mod:`allegro_ase.compile`).

Each model compiles once into a temporary cache (15-80 s on 2 cores). The whole
physics suite runs with the path switched on by ``ALLEGRO_ASE_TEST_COMPILE=1`` (conftest).
"""

from __future__ import annotations

import copy
import pickle
import time
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import F64_ATOL, GEOMETRIES, build_variant

from allegro_ase import AllegroCalculator
from allegro_ase.compile import CompileError, compile_model, compiled_cache_dir

COMPILED_VARIANTS = ["lmax2-parity-coupled", "nequip-lmax1-parity-3layers"]
PROPERTIES = ("energy", "energies", "forces", "stress", "stresses")


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    """A private compile cache for this module's tests (``ALLEGRO_ASE_CACHE``)."""
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("cache")
        patch.setenv("ALLEGRO_ASE_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module", params=COMPILED_VARIANTS)
def compiled_pair(request, compile_cache):
    """(eager calculator, compiled calculator) of one small float64 model."""
    model = build_variant(request.param).requires_grad_(False)
    eager = AllegroCalculator(model, device="cpu")
    return eager, AllegroCalculator(model, device="cpu", compile=True)


def results(calc: AllegroCalculator, atoms: Atoms) -> dict:
    atoms = atoms.copy()
    atoms.calc = calc
    properties = [p for p in PROPERTIES if p not in ("stress", "stresses") or atoms.pbc.any()]
    calc.calculate(atoms, properties)
    return dict(calc.results)


def assert_same_results(want: dict, have: dict, atol: float) -> None:
    assert set(want) == set(have)
    for key in want:
        np.testing.assert_allclose(have[key], want[key], rtol=0, atol=atol, err_msg=key)


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_compiled_calculator_equals_eager(compiled_pair, geometry):
    eager, compiled = compiled_pair
    atoms = GEOMETRIES[geometry]()
    assert_same_results(results(eager, atoms), results(compiled, atoms), F64_ATOL)


def test_compiled_program_takes_isolated_atoms_and_any_size(compiled_pair):
    eager, compiled = compiled_pair
    single = Atoms("Au", positions=[[0.0, 0.0, 0.0]])  # no edges at all
    far = Atoms("CuAuH", positions=[[0, 0, 0], [50, 0, 0], [0, 50, 0]])
    big = GEOMETRIES["alloy"]() * (2, 2, 1)  # another N and E than the example it traced
    for atoms in (single, far, big):
        assert_same_results(results(eager, atoms), results(compiled, atoms), F64_ATOL)


def test_compiled_blocks_of_centre_atoms_are_exact(compile_cache):
    model = build_variant("lmax2-parity-coupled").requires_grad_(False)
    atoms = GEOMETRIES["alloy"]() * (2, 1, 1)
    one_pass = AllegroCalculator(model, device="cpu", block_edges=None)
    blocks = AllegroCalculator(model, device="cpu", compile=True, block_edges=7)
    assert_same_results(results(one_pass, atoms), results(blocks, atoms), F64_ATOL)


def test_float32_model_compiles_and_agrees(compile_cache):
    eager = AllegroCalculator.from_pretrained("allegro-emt-metals", device="cpu")
    compiled = AllegroCalculator.from_pretrained("allegro-emt-metals", device="cpu", compile=True)
    atoms = GEOMETRIES["alloy"]()
    atoms.numbers[atoms.numbers == 1] = 13  # the model knows Al, Cu, Ag, Au
    want, have = results(eager, atoms), results(compiled, atoms)
    assert abs(have["energy"] - want["energy"]) < 1e-4
    np.testing.assert_allclose(have["forces"], want["forces"], atol=1e-4)
    np.testing.assert_allclose(have["stress"], want["stress"], atol=1e-6)


def test_a_compiled_model_is_loaded_from_the_cache(compiled_pair, compile_cache):
    eager, compiled = compiled_pair
    files = sorted(compiled_cache_dir().iterdir())
    started = time.perf_counter()
    again = compile_model(eager.model, torch.device("cpu"))
    assert time.perf_counter() - started < 10  # loaded, not compiled (compiling takes > 15 s)
    assert again.path == compiled.compiled.path
    assert sorted(compiled_cache_dir().iterdir()) == files


def test_a_changed_package_is_compiled_again(compile_cache):
    model = build_variant("lmax1-noparity-uncoupled-1layer").requires_grad_(False)
    first = compile_model(model, torch.device("cpu"))
    data = bytearray(first.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="does not match its recorded sha256"):
        second = compile_model(model, torch.device("cpu"))
    atoms = GEOMETRIES["triclinic"]()
    eager = AllegroCalculator(model, device="cpu")
    compiled = AllegroCalculator(model, device="cpu", compile=True)
    assert second.path == first.path
    assert_same_results(results(eager, atoms), results(compiled, atoms), F64_ATOL)


def test_the_cache_key_follows_the_weights(compile_cache):
    from allegro_ase.compile import compile_key

    model = build_variant("lmax1-noparity-uncoupled-1layer").requires_grad_(False)
    key = compile_key(model, torch.device("cpu"))
    assert compile_key(build_variant("lmax1-noparity-uncoupled-1layer"), torch.device("cpu")) == key
    with torch.no_grad():
        next(model.parameters())[0] += 1e-6
    assert compile_key(model, torch.device("cpu")) != key


def test_a_compiled_calculator_pickles_and_copies(compiled_pair):
    _, compiled = compiled_pair
    atoms = GEOMETRIES["slab"]()
    want = results(compiled, atoms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's own, from its package loader
        clone = pickle.loads(pickle.dumps(compiled))
    # Same program, but with more than one thread its scatter-adds (atomic adds) sum in a
    # run-dependent order, so results agree to rounding, not bit for bit.
    assert_same_results(want, results(clone, atoms), 1e-13)
    assert_same_results(want, results(copy.copy(compiled), atoms), 1e-13)


def test_a_failing_compiler_gives_a_clear_error(compile_cache, monkeypatch, tmp_path):
    from torch._inductor import config

    monkeypatch.setenv("ALLEGRO_ASE_CACHE", str(tmp_path))  # nothing cached here
    model = build_variant("lmax1-noparity-uncoupled-1layer").requires_grad_(False)
    with config.patch({"cpp.cxx": ("/nonexistent/c++",)}):
        with pytest.raises(CompileError, match="compile=False"):
            AllegroCalculator(model, device="cpu", compile=True)
    assert not list((tmp_path / "compiled").glob("*.pt2"))


def test_command_line_compile_flag_gives_the_calculators_numbers(compile_cache, tmp_path, capsys):
    from ase.io import read, write

    from allegro_ase.cli import main

    atoms = GEOMETRIES["alloy"]()
    atoms.numbers[atoms.numbers == 1] = 13
    write(tmp_path / "in.extxyz", atoms)
    command = ["eval", "allegro-emt-metals", str(tmp_path / "in.extxyz"), "-o"]
    status = main([*command, str(tmp_path / "out.extxyz"), "--compile", "--device", "cpu"])
    assert status == 0
    assert "compiled" in capsys.readouterr().err  # the log line that names the model
    predicted = read(tmp_path / "out.extxyz")
    compiled = AllegroCalculator.from_pretrained("allegro-emt-metals", device="cpu", compile=True)
    want = results(compiled, atoms)
    assert predicted.get_potential_energy() == pytest.approx(want["energy"], abs=1e-6)
    np.testing.assert_allclose(predicted.get_forces(), want["forces"], atol=1e-6)


def test_torch_sim_model_compiled_equals_eager(compiled_pair):
    ts = pytest.importorskip("torch_sim")
    from allegro_ase.torch_sim import AllegroTorchSimModel

    eager, _ = compiled_pair
    systems = [GEOMETRIES["alloy"](), GEOMETRIES["triclinic"](), GEOMETRIES["tiny_cell"]()]
    state = ts.io.atoms_to_state(systems, torch.device("cpu"), torch.float64)
    want = AllegroTorchSimModel(eager.model, device="cpu")(state)
    have = AllegroTorchSimModel(eager.model, device="cpu", compile=True)(state)
    for key in ("energy", "forces", "stress"):
        np.testing.assert_allclose(have[key].numpy(), want[key].numpy(), rtol=0, atol=F64_ATOL)


def test_an_unwritable_cache_gives_a_clear_error(monkeypatch, tmp_path):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    monkeypatch.setenv("ALLEGRO_ASE_CACHE", str(not_a_folder))
    model = build_variant("lmax1-noparity-uncoupled-1layer").requires_grad_(False)
    with pytest.raises(CompileError, match="ALLEGRO_ASE_CACHE to a writable folder"):
        AllegroCalculator(model, device="cpu", compile=True)


def test_compiled_batch_equals_eager_serial_calls(compiled_pair):
    eager, compiled = compiled_pair
    images = [make() for make in GEOMETRIES.values()]
    batched = compiled.calculate_batch(images, ["energy", "forces"])
    for atoms, have in zip(images, batched, strict=True):
        want = results(eager, atoms)
        assert have["energy"] == pytest.approx(want["energy"], abs=F64_ATOL)
        np.testing.assert_allclose(have["forces"], want["forces"], rtol=0, atol=F64_ATOL)


def test_a_program_that_takes_reverse_edge_pairs_runs_without_them(compiled_pair):
    from allegro_ase.graph import edge_vectors
    from allegro_ase.outputs import edge_outputs, graph_pairs

    eager, compiled = compiled_pair
    graph = eager._graph(GEOMETRIES["triclinic"]())
    edge_vec = edge_vectors(graph.pos, graph.cell, graph.edge_index, graph.cell_shifts)
    pairs = graph_pairs(eager.model, graph.edge_index, graph.cell_shifts) or ()
    assert compiled.compiled.takes_pairs == bool(pairs) == eager.model.shares_reverse_edges
    inputs = (edge_vec, graph.edge_index, graph.atom_types)
    # the edge gradients differ (a pair's radial part lands on one of its two edges); the
    # energies, forces and per-atom virials must not
    with_pairs = edge_outputs(None, *inputs, evaluate=compiled.compiled, pairs=pairs or None)
    without = edge_outputs(None, *inputs, evaluate=compiled.compiled)
    for name in ("energies", "forces", "atom_virials"):
        want, have = getattr(with_pairs, name), getattr(without, name)
        np.testing.assert_allclose(have, want, rtol=0, atol=F64_ATOL, err_msg=name)


def kernel_source(package) -> str:
    """The C++ kernels inside a compiled ``.pt2`` package (a zip archive)."""
    import zipfile

    with zipfile.ZipFile(package) as archive:
        names = [name for name in archive.namelist() if name.endswith(".kernel.cpp")]
        return "".join(archive.read(name).decode() for name in names)


def test_one_thread_gets_its_own_serial_program(compile_cache):
    from allegro_ase.compile import compile_key

    model = build_variant("lmax1-noparity-uncoupled-1layer").requires_grad_(False)
    cpu = torch.device("cpu")
    assert compile_key(model, cpu, "serial") != compile_key(model, cpu, "parallel")
    serial = AllegroCalculator(model, device="cpu", compile=True, num_threads=1)
    parallel = AllegroCalculator(model, device="cpu", compile=True, num_threads=2)
    assert serial.compiled.path != parallel.compiled.path
    serial_code, parallel_code = (kernel_source(c.compiled.path) for c in (serial, parallel))
    assert "#pragma omp parallel" in parallel_code
    assert "#pragma omp" not in serial_code and "atomic_add(" not in serial_code  # plain loops
    eager, atoms = AllegroCalculator(model, device="cpu"), GEOMETRIES["tiny_cell"]()
    for calc in (serial, parallel):
        assert_same_results(results(eager, atoms), results(calc, atoms), F64_ATOL)
