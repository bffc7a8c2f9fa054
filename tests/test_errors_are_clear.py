"""The bad-input matrix: each case gets an error that says what was wrong and what to do, or
the correct result.

Cases of the calculator's public API, by class (files and the zoo: ``test_checkpoint.py``,
``test_zoo.py``, ``test_nequip_files.py``; neighbour lists of far-apart atoms and huge cells:
``test_neighbor_lists.py``, ``test_batch_evaluation.py``; close contact of the shipped models:
``test_close_contact.py``):

- structure: unknown element, atomic numbers that are not elements, NaN/inf positions, NaN
  cell, pbc without a cell, a cell of zero volume, empty Atoms, coincident or nearly coincident
  atoms, stress of a molecule or of a slab without a vacuum vector;
- constructor: a name or a foreign module instead of a model, unknown device names, CUDA
  without CUDA, an unknown neighbour list, bad ``num_threads`` / ``memory_limit``, type names
  that are not elements;
- state: forces inside ``no_grad`` / ``inference_mode``, the user's frozen model untouched;
- memory: a dense cell beyond the memory budget (Allegro: evaluated in blocks, exact; NequIP:
  refused before allocating);
- configs: unknown keys and bad values; missing files.
"""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import InputError, PropertyNotImplementedError
from conftest import GEOMETRIES, calc_for, make_nequip_model, small_config

from allegro_ase import AllegroCalculator, AllegroConfig
from allegro_ase.calculator import resolve_device
from allegro_ase.memory import InsufficientMemoryError


def test_unknown_element_lists_model_species(default_model):
    atoms = Atoms("CuFe", positions=[[0, 0, 0], [2, 0, 0]])
    atoms.calc = calc_for(default_model)
    with pytest.raises(InputError, match=r"no parameters for Fe; it knows Cu, Au, H"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_positions_are_refused(default_model, bad):
    atoms = GEOMETRIES["cluster"]()
    atoms.positions[2, 1] = bad
    atoms.calc = calc_for(default_model)
    with pytest.raises(InputError, match=r"Positions of atoms \[2\] are NaN or infinite"):
        atoms.get_forces()


def test_pbc_without_cell_is_refused(default_model):
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [2, 0, 0]], pbc=True)
    atoms.calc = calc_for(default_model)
    with pytest.raises(InputError, match=r"pbc=\[True, True, True\] but the cell vectors .* zero"):
        atoms.get_potential_energy()


def test_zero_volume_periodic_cell_is_refused(default_model):
    atoms = Atoms(
        "Cu2", positions=[[0, 0, 0], [2, 0, 0]], cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True
    )
    atoms.calc = calc_for(default_model)
    with pytest.raises(InputError, match="linearly dependent"):
        atoms.get_potential_energy()


def test_empty_atoms_are_refused(default_model):
    atoms = Atoms()
    atoms.calc = calc_for(default_model)
    with pytest.raises(InputError, match="empty.*ase.build.bulk or ase.io.read"):
        atoms.get_potential_energy()


def test_stress_of_molecule_is_not_implemented(default_model):
    atoms = GEOMETRIES["cluster"]()
    atoms.calc = calc_for(default_model)
    with pytest.raises(PropertyNotImplementedError, match="Stress is undefined for isolated"):
        atoms.get_stress()
    assert np.isfinite(atoms.get_potential_energy())  # energy still works


def test_slab_without_vacuum_vector_has_forces_but_no_stress(default_model):
    atoms = GEOMETRIES["slab"]()
    atoms.cell[2] = 0.0
    atoms.calc = calc_for(default_model)
    assert np.isfinite(atoms.get_forces()).all()
    with pytest.raises(PropertyNotImplementedError, match="non-zero volume"):
        atoms.get_stress()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused(default_model):
    with pytest.raises(RuntimeError, match="CUDA is not available.*device='cpu'"):
        AllegroCalculator(default_model, device="cuda")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("device", ["meta", "mps", "cuda:x", "cpu:0", "tpu"])
def test_unknown_device_type_is_refused(device):
    with pytest.raises(ValueError, match=f"Unsupported device '{device}'; use 'auto', 'cpu'"):
        resolve_device(device)


def test_gpu_is_refused_with_the_name_to_use():
    with pytest.raises(ValueError, match="'gpu' \\(for a GPU, say 'cuda' or 'cuda:0'\\)"):
        resolve_device("gpu")


@pytest.mark.parametrize("device", ["CPU", " cpu ", "Cpu"])
def test_device_names_are_case_insensitive(device):
    assert resolve_device(device) == torch.device("cpu")


@pytest.mark.parametrize(
    "model, match",
    [
        (
            "allegro-emt-metals",
            r"not 'allegro-emt-metals'\. For a model of the zoo use .*from_pretrained",
        ),
        (torch.nn.Linear(3, 3), r"got torch\.nn\.modules\.linear\.Linear\. .*from_pretrained"),
    ],
    ids=["name", "foreign-module"],
)
def test_constructor_says_which_loader_to_use(model, match):
    with pytest.raises(TypeError, match=match):
        AllegroCalculator(model, device="cpu")


def test_frozen_user_model_is_left_exactly_as_it_was(default_model):
    model = make_nequip_model().requires_grad_(False).train()
    calc = AllegroCalculator(model, device="cpu")
    assert calc.model is model and model.training  # used as it is, its mode untouched


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_forces_work_inside_no_grad_and_inference_mode(default_model, context):
    atoms = GEOMETRIES["alloy"]()
    atoms.calc = calc_for(default_model)
    expected = atoms.get_forces().copy(), atoms.get_stress().copy()
    atoms.calc = calc_for(default_model)
    with context():
        np.testing.assert_allclose(atoms.get_forces(), expected[0], atol=1e-12)
        np.testing.assert_allclose(atoms.get_stress(), expected[1], atol=1e-12)


@pytest.mark.parametrize("numbers", [[29, 200], [29, 0], [29, -3]])
def test_atomic_numbers_that_are_not_elements_are_named(default_model, numbers):
    atoms = Atoms(numbers=numbers, positions=[[0, 0, 0], [0, 0, 2.0]])
    atoms.calc = calc_for(default_model)
    with pytest.raises(InputError, match=rf"Atomic numbers \[{numbers[1]}\] are not elements"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("distance", [0.0, 1e-8, 0.05])
def test_atoms_on_top_of_each_other_are_named(default_model, distance):
    atoms = Atoms("CuAuH", positions=[[0, 0, 0], [2, 0, 0], [2, 0, distance]])
    atoms.calc = calc_for(default_model)
    with pytest.raises(InputError, match=r"Atoms [12] \((Au|H)\) and [12] \((Au|H)\) are .* apart"):
        atoms.get_potential_energy()


def test_distance_check_can_be_switched_off(default_model):
    atoms = Atoms("CuAu", positions=[[0, 0, 0], [0, 0, 0.05]])
    atoms.calc = AllegroCalculator(default_model, device="cpu", min_distance=0)
    assert np.isfinite(atoms.get_potential_energy())


def test_nan_cell_says_what_to_do(default_model):
    atoms = GEOMETRIES["alloy"]()
    atoms.cell[1, 1] = np.nan
    atoms.calc = calc_for(default_model)
    with pytest.raises(InputError, match=r"cell contains NaN .* atoms\.set_cell"):
        atoms.get_potential_energy()


def test_unknown_neighbor_list_is_refused(default_model):
    with pytest.raises(ValueError, match="neighbor_list='ase' is unknown"):
        AllegroCalculator(default_model, neighbor_list="ase")


@pytest.mark.parametrize(
    "options, match",
    [
        ({"num_threads": 0}, "num_threads must be a positive integer"),
        ({"num_threads": 1.5}, "num_threads must be a positive integer"),
        ({"memory_limit": -1}, "memory_limit must be a positive number of GiB"),
    ],
)
def test_bad_thread_and_memory_settings_are_refused(default_model, options, match):
    with pytest.raises(ValueError, match=match):
        calc_for(default_model, **options)


def dense_cell() -> Atoms:
    """1000 Cu atoms at random in a 10 Å box (12 times the density of copper)."""
    rng = np.random.default_rng(3)
    atoms = Atoms("Cu1000", positions=rng.random((1000, 3)) * 10.0, cell=[10.0] * 3, pbc=True)
    return atoms


def test_dense_cell_beyond_the_budget_runs_in_blocks_for_allegro(default_model):
    atoms = dense_cell()[:150]  # same density, fewer atoms: quick
    atoms.set_cell([10.0 * (150 / 1000) ** (1 / 3)] * 3)
    atoms.wrap()
    expected = calc_for(default_model, min_distance=0).get_potential_energy(atoms)
    blocks = []
    model_forward = type(default_model).forward

    def forward(module, edge_vec, *args):
        blocks.append(edge_vec.shape[0])
        return model_forward(module, edge_vec, *args)

    # compile=False: the blocks are watched in the eager model's forward
    atoms.calc = calc_for(default_model, min_distance=0, memory_limit=0.02, compile=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(default_model), "forward", forward)
        assert atoms.get_potential_energy() == pytest.approx(expected, abs=1e-9)
    blocks = [size for size in blocks if size > 1000]  # not the memory probes (<= 512 edges)
    assert len(blocks) > 1 and sum(blocks) > 30_000  # all ~40,000 edges, in blocks


def test_dense_cell_beyond_the_budget_is_refused_for_nequip():
    atoms = dense_cell()
    atoms.calc = calc_for(make_nequip_model(), min_distance=0, memory_limit=0.5)
    with pytest.raises(InsufficientMemoryError, match=r"1000 atoms and about .* edges .* GiB"):
        atoms.get_potential_energy()


def test_config_rejects_unknown_keys_and_bad_values():
    values = small_config().to_dict()
    with pytest.raises(ValueError, match=r"Unknown Allegro config keys \['lmax'\]"):
        AllegroConfig.from_dict({**values, "lmax": 2})
    with pytest.raises(ValueError, match="r_max must be positive"):
        small_config(r_max=-1.0)
    with pytest.raises(ValueError, match=r"must lie in \(0, r_max"):
        small_config(per_edge_type_cutoff={"Cu": 9.0})
    with pytest.raises(ValueError, match="unknown type 'Fe'"):
        small_config(per_edge_type_cutoff={"Fe": 2.0})
    with pytest.raises(ValueError, match="missing \\['H'\\]"):
        from allegro_ase import AllegroModel

        AllegroModel(small_config(per_type_energy_shifts={"Cu": 0.0, "Au": 0.0}))


def test_nequip_config_rejects_unknown_keys_and_bad_values():
    from allegro_ase.models import NequIPConfig

    values = make_nequip_model().config.to_dict()
    with pytest.raises(ValueError, match=r"Unknown NequIP config keys \['num_tensor_features'\]"):
        NequIPConfig.from_dict({**values, "num_tensor_features": 4})
    with pytest.raises(
        ValueError, match=r"one multiplicity per l = 0 \.\.\. l_max = 2, got \[4, 2\]"
    ):
        NequIPConfig.from_dict({**values, "num_features": [4, 2]})
    with pytest.raises(ValueError, match=r"convnet_nonlinearity_gates names unknown .*\['relu'\]"):
        NequIPConfig.from_dict({**values, "convnet_nonlinearity_gates": {"e": "relu", "o": "tanh"}})


def test_custom_type_names_need_a_species_map():
    from allegro_ase import AllegroModel

    model = AllegroModel(
        small_config(
            type_names=["metal", "heavy", "light"],
            per_type_energy_scales=None,
            per_type_energy_shifts=None,
        )
    )
    with pytest.raises(ValueError, match="not chemical symbols; pass species_to_type_name"):
        AllegroCalculator(model, device="cpu")
    calc = AllegroCalculator(
        model, device="cpu", species_to_type_name={"Cu": "metal", "Au": "heavy", "H": "light"}
    )
    atoms = GEOMETRIES["cluster"]()
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())


def test_missing_model_file_says_what_to_load_instead(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No such model file: .*from_pretrained"):
        AllegroCalculator.from_file(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match=r"No such reference model file.*nequip\.net id"):
        AllegroCalculator.from_nequip(tmp_path / "nope.nequip.zip")
