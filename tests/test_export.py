"""Exported models (LAMMPS pair_allegro / pair_nequip, reference ASE) give our calculator's numbers.

Three layers, each checked against the one before: the eager target modules against
:class:`~allegro_ase.AllegroCalculator`; the ``torch.export`` program against the eager module
(no compiler, cheap); the AOTInductor package against the calculator (``slow``: a compile
takes minutes). ``tests/data/export_reference.json`` holds what the *reference*
``NequIPCalculator.from_compiled_model`` computed from our exported file.
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import (
    alloy,
    calc_for,
    cluster,
    make_model,
    make_nequip_model,
    slab,
    tiny_cell,
    triclinic,
)

from allegro_ase import save_model
from allegro_ase.cli import main
from allegro_ase.conversion import SpeciesMap, atoms_to_graph
from allegro_ase.io.export import export_metadata, export_model, export_program, exportable
from allegro_ase.io.targets import TargetModule, get_target, target_inputs, to_ghost_atoms
from allegro_ase.models import build_model
from allegro_ase.outputs import compute_outputs

PATHS_ATOL = 1e-12  # gather vs grouped tensor product, float64
EAGER_ATOL = 1e-10  # target modules, exported programs and packages vs calculator, float64
REFERENCE_ATOL = 1e-6  # reference NequIPCalculator on our file vs our calculator
F32_ATOL = 1e-5  # float32 model: exported program vs calculator (eV, eV/Å)

EDGE_CUTOFFS = {"Cu": {"Au": 3.2}, "Au": 3.6}
# with the ZBL pair term, so that exported files (and LAMMPS) carry it too
ARCHITECTURES = {
    "allegro": lambda: make_model(per_edge_type_cutoff=EDGE_CUTOFFS, pair_potential="zbl"),
    "nequip": lambda: make_nequip_model(per_edge_type_cutoff=EDGE_CUTOFFS, pair_potential="zbl"),
}
CASES = [
    ("allegro", "pair_allegro"),
    ("allegro", "pair_nequip"),
    ("allegro", "ase"),
    ("nequip", "pair_nequip"),
    ("nequip", "ase"),
]


def isolated_pair() -> Atoms:
    """Two atoms beyond the cutoff: no edges at all (E = 0)."""
    return Atoms("CuAu", positions=[[0, 0, 0], [0.3, 0.1, 6.0]])


GEOMETRIES = {
    "alloy": alloy,
    "triclinic": triclinic,
    "slab": slab,
    "tiny_cell": tiny_cell,
    "cluster": cluster,
    "isolated_pair": isolated_pair,
}


@pytest.fixture(scope="module")
def models():
    return {name: build().requires_grad_(False) for name, build in ARCHITECTURES.items()}


def reference_results(model, atoms):
    """Energy, per-atom energies, forces and (periodic) stress from our calculator."""
    atoms = atoms.copy()
    atoms.calc = calc_for(model)
    results = {
        "energy": atoms.get_potential_energy(),
        "energies": atoms.get_potential_energies(),
        "forces": atoms.get_forces(),
    }
    if atoms.pbc.any():
        results["stress"] = atoms.get_stress(voigt=False)
    return results


def target_results(outputs, target, atoms, graph):
    """The calculator's quantities from a target's outputs; ghost forces go to their owners."""
    fields = dict(zip(get_target(target).outputs, outputs, strict=True))
    fields = {name: value.detach().numpy() for name, value in fields.items()}
    n = len(atoms)
    forces, energies = fields["forces"], fields["atomic_energy"][:, 0]
    if target == "pair_allegro":
        owner = to_ghost_atoms(graph).owner.numpy()
        forces = np.zeros((n, 3))
        np.add.at(forces, owner, fields["forces"])
        energies = energies[:n]  # pair_allegro's energy: local atoms only
    results = {"energy": energies.sum(), "energies": energies, "forces": forces}
    if "total_energy" in fields:
        np.testing.assert_allclose(fields["total_energy"][0, 0], energies.sum(), atol=1e-12)
    if atoms.pbc.any():
        volume = abs(atoms.cell.volume)
        if "stress" in fields:
            results["stress"] = fields["stress"][0]
        else:
            results["stress"] = -fields["virial"][0] / volume  # ASE sign
    return results


def assert_same(results, expected, atol):
    assert set(results) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(results[key], value, atol=atol, rtol=0, err_msg=key)


def graph_of(model, atoms):
    return atoms_to_graph(atoms, SpeciesMap(model.type_names), model.r_max, model.cutoff_matrix)


@pytest.mark.parametrize("geometry", ["alloy", "triclinic", "slab", "cluster"])
@pytest.mark.parametrize("variant", [{}, {"tp_path_channel_coupling": False, "parity": False}])
def test_gather_tensor_product_equals_grouped_tensor_product(geometry, variant):
    model = make_model(**variant).requires_grad_(False)
    export_friendly = copy.deepcopy(model)
    export_friendly.group_edges_by_center = False
    graph = graph_of(model, GEOMETRIES[geometry]())
    fast, gathered = compute_outputs(model, graph), compute_outputs(export_friendly, graph)
    for name in ("energies", "forces", "virial", "atom_virials"):
        torch.testing.assert_close(
            getattr(gathered, name), getattr(fast, name), atol=PATHS_ATOL, rtol=0
        )


def test_grouped_tensor_product_is_not_traceable_with_dynamic_shapes(models):
    from torch.fx.experimental.proxy_tensor import make_fx

    module = TargetModule(models["allegro"], "pair_nequip")
    inputs = target_inputs(graph_of(models["allegro"], alloy()), "pair_nequip")
    with pytest.raises(Exception, match="data.dependent|Data-dependent|data dependent"):
        make_fx(
            module,
            tracing_mode="symbolic",
            _allow_non_fake_inputs=True,
            _error_on_data_dependent_ops=True,
        )(*inputs)


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("architecture, target", CASES)
def test_target_module_matches_calculator(models, architecture, target, geometry):
    model, atoms = models[architecture], GEOMETRIES[geometry]()
    graph = graph_of(model, atoms)
    outputs = TargetModule(model, target)(*target_inputs(graph, target))
    results = target_results(outputs, target, atoms, graph)
    assert_same(results, reference_results(model, atoms), EAGER_ATOL)


def test_stress_is_nan_without_a_cell(models):
    atoms = cluster()
    outputs = TargetModule(models["nequip"], "ase")(
        *target_inputs(graph_of(models["nequip"], atoms), "ase")
    )
    assert torch.isnan(outputs[3]).all()


def test_ghost_atoms_are_periodic_images_of_their_owners(models):
    atoms = triclinic()
    graph = graph_of(models["allegro"], atoms)
    ghosts = to_ghost_atoms(graph)
    n = len(atoms)
    assert ghosts.pos.shape[0] > n and torch.equal(ghosts.owner[:n], torch.arange(n))
    assert (ghosts.edge_index[0] < n).all()  # centres are local atoms
    fractional = torch.linalg.solve(graph.cell.T, (ghosts.pos - graph.pos[ghosts.owner]).T).T
    torch.testing.assert_close(fractional, fractional.round(), atol=1e-10, rtol=0)
    vectors = ghosts.pos[ghosts.edge_index[1]] - ghosts.pos[ghosts.edge_index[0]]
    center, neighbor = graph.edge_index
    expected = graph.pos[neighbor] - graph.pos[center] + graph.cell_shifts @ graph.cell
    torch.testing.assert_close(vectors, expected, atol=1e-12, rtol=0)


def test_pair_allegro_refuses_message_passing_models(models):
    with pytest.raises(ValueError, match="strictly local model.*--target pair_nequip"):
        TargetModule(models["nequip"], "pair_allegro")


def test_metadata_follows_the_pair_style_contract(models):
    metadata = export_metadata(models["allegro"], "pair_allegro")
    assert metadata["r_max"] == "4.0" and metadata["num_types"] == "3"
    assert metadata["type_names"] == "Cu Au H" and metadata["model_dtype"] == "float64"
    assert metadata["allow_tf32"] == "0"
    assert metadata["nequip_aoti_inputs"] == "pos edge_index atom_types"
    assert metadata["nequip_aoti_outputs"] == "atomic_energy forces virial"
    # row-major, row = centre type: Cu -> Au is 3.2, Au -> Cu is Au's 3.6
    cutoffs = np.array(metadata["per_edge_type_cutoff"].split(), dtype=float).reshape(3, 3)
    assert cutoffs[0, 1] == 3.2 and cutoffs[1, 0] == 3.6 and cutoffs[2, 2] == 4.0
    ase_metadata = export_metadata(models["nequip"], "ase")
    assert ase_metadata["nequip_aoti_inputs"] == "pos edge_index atom_types cell edge_cell_shift"
    assert ase_metadata["nequip_aoti_outputs"] == "atomic_energy total_energy forces stress"
    assert "per_edge_type_cutoff" not in export_metadata(make_model(), "pair_nequip")


def test_export_needs_the_pair_style_suffix(models, tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.nequip\.pt2"):
        export_model(models["allegro"], tmp_path / "model.pt2", "pair_allegro")


def test_export_command_reports_errors(models, tmp_path, capsys):
    save_model(models["nequip"], tmp_path / "nequip.pt")
    status = main(
        ["export", str(tmp_path / "nequip.pt"), "x.nequip.pt2", "--target", "pair_allegro"]
    )
    assert status == 1
    assert "strictly local model" in capsys.readouterr().err


@pytest.fixture(scope="module")
def programs(models):
    """One exported program per (architecture, target), traced on the default example."""
    return {case: export_program(models[case[0]], case[1]) for case in CASES}


@pytest.mark.parametrize("architecture, target", CASES)
def test_exported_program_matches_eager_for_any_size(models, programs, architecture, target):
    model, program = models[architecture], programs[architecture, target].module()
    eager = TargetModule(exportable(model), target)
    for make_atoms in GEOMETRIES.values():  # N from 1 to ~60 with ghosts, E from 0
        inputs = target_inputs(graph_of(model, make_atoms()), target)
        for want, got in zip(eager(*inputs), program(*inputs), strict=True):
            torch.testing.assert_close(got, want.detach(), atol=EAGER_ATOL, rtol=0, equal_nan=True)


def _compiled_results(package, model, target, atoms):
    graph = graph_of(model, atoms)
    with torch.inference_mode():
        outputs = package(list(target_inputs(graph, target)))
    return target_results(outputs, target, atoms, graph)


@pytest.mark.slow
@pytest.mark.parametrize("architecture, target", [("allegro", "pair_allegro"), ("nequip", "ase")])
def test_compiled_package_matches_calculator(models, tmp_path, architecture, target):
    model = models[architecture]
    source, out = tmp_path / "model.pt", tmp_path / f"{architecture}.nequip.pt2"
    save_model(model, source)
    assert main(["export", str(source), str(out), "--target", target]) == 0
    package = torch._inductor.aoti_load_package(str(out))
    metadata = package.get_metadata()
    for key, value in export_metadata(model, target).items():
        assert metadata[key] == value
    for make_atoms in GEOMETRIES.values():
        atoms = make_atoms()
        results = _compiled_results(package, model, target, atoms)
        assert_same(results, reference_results(model, atoms), EAGER_ATOL)


REFERENCE_FIXTURE = Path(__file__).parent / "data" / "export_reference.json"


@pytest.mark.skipif(not REFERENCE_FIXTURE.is_file(), reason="fixture not made yet")
def test_reference_calculator_reproduces_our_numbers_from_our_file():
    fixture = json.loads(REFERENCE_FIXTURE.read_text())
    for case in fixture["cases"]:
        model = build_model(case["architecture"], case["config"]).requires_grad_(False)
        for structure in case["structures"]:
            atoms = Atoms(
                numbers=structure["numbers"],
                positions=structure["positions"],
                cell=structure["cell"],
                pbc=structure["pbc"],
            )
            expected = reference_results(model, atoms)
            got = {key: np.array(structure[key]) for key in expected}
            assert_same(got, expected, REFERENCE_ATOL)


def test_float32_model_exports_with_float64_interface():
    model = make_model(model_dtype="float32").requires_grad_(False)
    program = export_program(model, "pair_allegro").module()
    atoms = alloy()
    graph = graph_of(model, atoms)
    outputs = program(*target_inputs(graph, "pair_allegro"))
    assert all(output.dtype == torch.float64 for output in outputs)
    results = target_results(outputs, "pair_allegro", atoms, graph)
    expected = reference_results(model, atoms)
    np.testing.assert_allclose(results["forces"], expected["forces"], atol=F32_ATOL, rtol=0)
    np.testing.assert_allclose(results["energy"], expected["energy"], atol=F32_ATOL, rtol=0)


def test_kokkos_padding_atoms_and_edges_change_nothing(models):
    """pair_allegro's Kokkos variant pads with atoms at 0 and 100 Å joined by dummy edges."""
    module = TargetModule(models["allegro"], "pair_allegro")
    pos, edge_index, atom_types = target_inputs(
        graph_of(models["allegro"], alloy()), "pair_allegro"
    )
    n = pos.shape[0]
    padded_pos = torch.cat([pos, pos.new_tensor([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0]])])
    dummy_edges = torch.tensor([[n], [n + 1]]).expand(2, 5)
    padded_types = torch.cat([atom_types, atom_types[:2]])
    padded_energy, padded_forces, padded_virial = module(
        padded_pos, torch.cat([edge_index, dummy_edges], 1), padded_types
    )
    energy, forces, virial = module(pos, edge_index, atom_types)
    torch.testing.assert_close(padded_energy[:n], energy, atol=PATHS_ATOL, rtol=0)
    torch.testing.assert_close(padded_forces[:n], forces, atol=PATHS_ATOL, rtol=0)
    torch.testing.assert_close(padded_virial, virial, atol=PATHS_ATOL, rtol=0)
