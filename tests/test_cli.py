"""`allegro-ase eval|md|relax|neb|export|train` on the shipped allegro-emt-metals model.

Every command runs in-process through ``cli.main``, in a temporary folder, on small structures
and a few steps; the numbers are checked against the calculator or ASE called directly. Only
the import test needs a subprocess.
"""

import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc100
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.io import read, write
from ase.mep import NEB
from ase.optimize import BFGS

from allegro_ase import AllegroCalculator
from allegro_ase.cli import error_line, main
from allegro_ase.commands.common import load_energy_model
from allegro_ase.datasets import FrameWriter, read_hdf5

MODEL = "allegro-emt-metals"
DATA = Path(__file__).parent / "data"
HELDOUT = DATA / "heldout" / "allegro-emt-metals.h5"
NEQUIP_FILES = DATA / "nequip_files"
# held-out errors of the model card (meV/atom, meV/Å); a few frames scatter around them
CARD_ENERGY_MAE, CARD_FORCES_MAE = 0.60, 7.26
TABLE_RESOLUTION = 1e-4  # the printed table has four decimals
# predictions read back as labels: the positions lost their 9th decimal in the extxyz file,
# which moves float32 forces by ~1e-7 eV/Å (1e-4 meV/Å)
ROUND_TRIP_ATOL = 1e-3
EXTXYZ_ATOL = 1e-8  # extxyz writes arrays with 8 decimals
F32_RTOL = 1e-6
F64_ATOL = 1e-8  # eV, float64 weights against float64 weights
BARRIER_ATOL = 0.03  # eV, the model against EMT for the Au hop on Al(100), as the card states


@pytest.fixture(scope="module")
def calc():
    return AllegroCalculator.from_pretrained(MODEL, device="cpu")


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """Run every command in its own folder, and restore torch's thread count (--threads)."""
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run(capsys, command: str) -> tuple[int, str, str]:
    """Run ``allegro-ase COMMAND`` in-process; return (exit status, stdout, stderr)."""
    status = main(shlex.split(command))
    out, err = capsys.readouterr()
    return status, out, err


def error_table(out: str) -> dict[str, tuple[float, float]]:
    """Quantity -> (MAE, RMSE) from the table that ``eval`` prints."""
    rows = [line.split() for line in out.splitlines()]
    keys = ("energy_per_atom", "forces", "stress")
    return {row[0]: (float(row[2]), float(row[3])) for row in rows if row[:1] and row[0] in keys}


def cu3au(rattle: float = 0.05, a: float = 3.7):
    atoms = bulk("Cu", "fcc", a=a, cubic=True) * 2  # 32 atoms
    atoms.numbers[::4] = 79
    atoms.rattle(rattle, seed=1)
    return atoms


# --- the command line itself -----------------------------------------------------------------


def test_help_of_every_command_imports_neither_torch_nor_e3nn_nor_ase_calculators():
    commands = [[]] + [[name] for name in ("eval", "md", "relax", "neb", "train", "export")]
    commands += [["models", action] for action in ("list", "info", "fetch", "verify")]
    script = (
        "import sys\n"
        "from allegro_ase.cli import error_line, main\n"
        f"for argv in {commands!r}:\n"
        "    try:\n"
        "        main([*argv, '--help'])\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, argv\n"
        "heavy = ('torch', 'e3nn', 'ase.calculators', 'matscipy', 'h5py')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "[]"
    assert "usage: allegro-ase relax" in done.stdout


def test_export_targets_are_the_librarys():
    from allegro_ase.commands.export import TARGETS
    from allegro_ase.io.targets import TARGETS as LIBRARY_TARGETS

    assert TARGETS == tuple(LIBRARY_TARGETS)


# --- eval --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heldout_subset(tmp_path_factory):
    """Eight held-out frames (bulk, alloys, slabs, clusters...) written in our HDF5 schema."""
    frames = read_hdf5(HELDOUT)[::83][:8]
    path = tmp_path_factory.mktemp("eval") / "subset.h5"
    with FrameWriter(path, method="EMT") as writer:
        writer.append(frames)
    return path, frames


def test_eval_against_emt_labels_gives_the_calculators_errors(heldout_subset, calc, capsys):
    path, frames = heldout_subset
    status, out, _ = run(capsys, f"eval {MODEL} {path} -o pred.extxyz --plot parity.png -q")
    assert status == 0
    table = error_table(out)
    energy, forces, stress = [], [], []
    for frame in frames:
        atoms = frame.to_atoms()
        atoms.calc = calc
        energy.append((atoms.get_potential_energy() - frame.energy) / len(atoms))
        forces.append(atoms.get_forces() - frame.forces)
        if frame.stress is not None:
            stress.append(atoms.get_stress(voigt=False) - frame.stress)  # all 9 components
    expected = {
        "energy_per_atom": np.array(energy),
        "forces": np.concatenate(forces),
        "stress": np.concatenate(stress),
    }
    assert set(table) == set(expected)
    for key, error in expected.items():
        mae, rmse = 1e3 * np.abs(error).mean(), 1e3 * np.sqrt((error**2).mean())
        assert table[key] == pytest.approx((mae, rmse), abs=TABLE_RESOLUTION), key
    # a handful of held-out frames scatter around the card's held-out errors
    assert table["energy_per_atom"][0] < 4 * CARD_ENERGY_MAE
    assert table["forces"][0] < 4 * CARD_FORCES_MAE
    assert Path("parity.png").stat().st_size > 10_000
    predicted = read("pred.extxyz", index=":")
    assert len(predicted) == len(frames)
    assert predicted[0].info["ref_energy"] == pytest.approx(frames[0].energy, abs=EXTXYZ_ATOL)
    np.testing.assert_allclose(
        predicted[0].arrays["ref_forces"], frames[0].forces, atol=EXTXYZ_ATOL
    )

    # the predictions, read back as labels, are the model's own: zero error
    status, out, _ = run(capsys, f"eval {MODEL} pred.extxyz -q")
    assert status == 0
    assert set(error_table(out)) == set(expected)
    for mae, rmse in error_table(out).values():
        assert mae < ROUND_TRIP_ATOL and rmse < ROUND_TRIP_ATOL

    # the kept labels, named by key, give back the first table
    keys = "--energy-key ref_energy --forces-key ref_forces --stress-key ref_stress"
    status, out, _ = run(capsys, f"eval {MODEL} pred.extxyz {keys} -q")
    assert status == 0
    for key, values in error_table(out).items():
        assert values == pytest.approx(table[key], abs=2 * TABLE_RESOLUTION), key
    status, out, err = run(capsys, f"eval {MODEL} pred.extxyz --energy-key REF_energy -q")
    assert status == 1
    assert "--energy-key REF_energy: no frame has atoms.info['REF_energy']" in err


def test_eval_without_labels_predicts_in_the_requested_dtype(capsys):
    atoms = cu3au()
    write("bare.xyz", atoms)  # plain xyz: positions only
    status, out, err = run(capsys, f"eval {MODEL} bare.xyz -o p.xyz --dtype float64 --device cpu")
    assert status == 0
    assert "no reference labels in the input: predictions only" in out
    assert "float64" in err  # the log line that names the model
    assert "1/1" in err and "frame/s" in err  # the progress bar
    (predicted,) = read("p.xyz", index=":")
    atoms = read("bare.xyz")  # the positions as eval read them
    atoms.calc = AllegroCalculator.from_pretrained(MODEL, device="cpu", dtype="float64")
    assert predicted.get_potential_energy() == pytest.approx(
        atoms.get_potential_energy(), abs=F64_ATOL
    )


# --- relax -------------------------------------------------------------------------------------


def test_relax_brings_fmax_below_the_target(calc, capsys):
    write("start.extxyz", cu3au())
    command = f"relax {MODEL} start.extxyz --fmax 0.02 --optimizer bfgs --threads 1 -q"
    status, out, err = run(capsys, command)
    assert status == 0, err
    assert err == ""  # --quiet: no bar, no log
    relaxed = read("start-relaxed.extxyz")
    relaxed.calc = calc
    assert np.linalg.norm(relaxed.get_forces(), axis=1).max() < 0.02
    assert f"E = {relaxed.get_potential_energy():.6f} eV" in out
    assert out.startswith("converged in ")
    assert torch.get_num_threads() == 1


def test_relax_with_cell_removes_the_stress(calc, capsys):
    start = cu3au(rattle=0.02, a=3.6)  # compressed: EMT's Cu3Au has a = 3.71 Å
    write("start.extxyz", start)
    fmax = 0.02
    state = np.random.get_state()  # FrechetCellFilter's logm draws from it (scipy's onenormest)
    try:
        status, out, _ = run(
            capsys, f"relax {MODEL} start.extxyz --cell --fmax {fmax} -o end.traj -q"
        )
    finally:
        np.random.set_state(state)
    assert status == 0
    relaxed = read("end.traj")
    relaxed.calc = calc
    # FrechetCellFilter's cell forces are virial / N: |stress| < fmax * N / V at convergence
    assert np.abs(relaxed.get_stress()).max() < fmax * len(relaxed) / relaxed.get_volume()
    assert relaxed.get_volume() > 1.05 * start.get_volume()
    assert f"volume = {relaxed.get_volume():.3f} Å³" in out


def test_relax_that_runs_out_of_steps_exits_3_and_still_writes(capsys):
    write("start.extxyz", cu3au(rattle=0.2))
    status, out, err = run(capsys, f"relax {MODEL} start.extxyz --steps 2 -o end.extxyz -q")
    assert status == 3
    assert out.startswith("NOT converged in 2 steps")
    assert err.startswith("allegro-ase: relax did not converge: fmax ")
    assert len(read("end.extxyz")) == 32


# --- md ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ensemble", ["nve", "langevin", "bussi", "nose-hoover", "npt"])
def test_md_writes_every_interval_of_the_requested_steps(ensemble, capsys):
    write("start.extxyz", cu3au(rattle=0.0))
    command = f"md {MODEL} start.extxyz --ensemble {ensemble} --steps 6 --temperature 500"
    status, out, err = run(capsys, f"{command} --interval 2 --traj md.traj --log md.log")
    assert status == 0
    assert "6/6" in err and "step/s" in err  # the progress bar, with the rate
    frames = read("md.traj", index=":")
    assert len(frames) == 6 // 2 + 1  # steps 0, 2, 4, 6
    assert len(Path("md.log").read_text().splitlines()) == 1 + 4
    assert out.startswith(f"6 steps (0.006 ps) of 32 atoms, {ensemble}")
    positions = np.array([frame.positions for frame in frames])
    assert np.abs(positions[-1] - positions[0]).max() > 1e-3  # the atoms moved
    if ensemble == "nve":
        total = [frame.get_potential_energy() + frame.get_kinetic_energy() for frame in frames]
        assert np.ptp(total) < 1e-4 * len(frames[0])  # eV: 1 fs steps conserve the energy


def test_md_seed_fixes_the_run_and_leaves_the_global_rng_alone(capsys):
    write("start.extxyz", cu3au(rattle=0.0))
    state = np.random.get_state()
    finals = []
    for seed, name in ((1, "a"), (1, "b"), (2, "c")):
        command = f"md {MODEL} start.extxyz --ensemble langevin --steps 3 --interval 3"
        assert run(capsys, f"{command} --seed {seed} --traj {name}.extxyz -q")[0] == 0
        finals.append(read(f"{name}.extxyz").positions)
    np.testing.assert_array_equal(finals[0], finals[1])
    assert np.abs(finals[0] - finals[2]).max() > 1e-6
    after = np.random.get_state()
    assert np.array_equal(state[1], after[1]) and state[2:] == after[2:]


# --- neb ---------------------------------------------------------------------------------------


def au_hop_on_al100():
    """Au hopping between hollow sites of a 2x2x3 Al(100) slab (the ASE tutorial system)."""
    slab = fcc100("Al", size=(2, 2, 3))
    add_adsorbate(slab, "Au", 1.7, "hollow")
    slab.center(axis=2, vacuum=4.0)
    slab.set_constraint(FixAtoms(mask=[atom.tag > 1 for atom in slab]))
    final = slab.copy()
    final[-1].x += final.get_cell()[0, 0] / 2
    return slab, final


def emt_barrier(initial, final, n_images: int, fmax: float) -> float:
    """The same protocol with ASE and EMT, the model's reference method."""
    for atoms in (initial, final):
        atoms.calc = EMT()
        BFGS(atoms, logfile=None).run(fmax=fmax)
    images = [initial, *(initial.copy() for _ in range(n_images)), final]
    for image in images:
        image.calc = EMT()
    band = NEB(images, method="improvedtangent")
    band.interpolate()
    BFGS(band, logfile=None).run(fmax=fmax, steps=300)
    energies = [image.get_potential_energy() for image in images]
    return max(energies) - energies[0]


def test_neb_barrier_of_the_au_hop_is_emts(capsys):
    initial, final = au_hop_on_al100()
    write("initial.traj", initial)
    write("final.traj", final)
    command = f"neb {MODEL} initial.traj final.traj --images 3 --relax-endpoints --optimizer bfgs"
    status, out, _ = run(capsys, f"{command} --traj band.traj --plot band.png -q")
    assert status == 0
    line = next(line for line in out.splitlines() if line.startswith("barrier:"))
    forward, backward = (float(line.split()[k]) for k in (2, 5))
    band = read("band.traj", index=":")
    energies = [image.get_potential_energy() for image in band]
    assert len(band) == 5
    assert forward == pytest.approx(max(energies) - energies[0], abs=1e-4)
    assert backward == pytest.approx(max(energies) - energies[-1], abs=1e-4)
    assert forward == pytest.approx(backward, abs=0.01)  # a symmetric hop
    assert forward == pytest.approx(emt_barrier(*au_hop_on_al100(), 3, 0.05), abs=BARRIER_ATOL)
    assert Path("band.png").stat().st_size > 10_000


def test_neb_refuses_ends_with_different_atoms(capsys):
    initial, _ = au_hop_on_al100()
    write("initial.traj", initial)
    write("final.traj", initial[:-1])
    status, _, err = run(capsys, f"neb {MODEL} initial.traj final.traj -q")
    assert status == 1
    assert err == (
        "allegro-ase: error: INITIAL (Al12Au, 13 atoms) and FINAL (Al12, 12 atoms) must hold "
        "the same atoms in the same order.\n"
    )


# --- reference-framework models ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["allegro.ckpt", "nequip.nequip.zip"])
def test_reference_files_load_as_from_nequip_does(name, capsys):
    atoms = cu3au()
    write("bare.extxyz", atoms)
    path = NEQUIP_FILES / name
    status, _, _ = run(capsys, f"eval {path} bare.extxyz -o p.extxyz -q")
    assert status == 0
    atoms.calc = AllegroCalculator.from_nequip(path, device="cpu")
    # the same model; float32 sums may be added in another order
    expected = atoms.get_potential_energy()
    assert read("p.extxyz").get_potential_energy() == pytest.approx(expected, rel=F32_RTOL)


def test_export_takes_a_reference_checkpoint(capsys):
    # the NequIP checkpoint loads (through allegro_ase.nequip_files); the target, not the
    # loader, then refuses it
    path = NEQUIP_FILES / "nequip.ckpt"
    status, _, err = run(capsys, f"export {path} x.nequip.pt2 --target pair_allegro")
    assert status == 1
    assert err.startswith("allegro-ase: error: --target pair_allegro needs a strictly local model")
    assert "got NequIP" in err
    assert type(load_energy_model(str(path))).__name__ == "NequIPModel"


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, message",
    [
        (f"relax {MODEL} missing.extxyz", "missing.extxyz: no such file."),
        (
            "md allegro-emt-metlas s.extxyz",
            "Unknown model 'allegro-emt-metlas'. Did you mean 'allegro-emt-metals'",
        ),
        ("eval no/such/model.pt s.extxyz", "no/such/model.pt: no such model file. MODEL is a zoo"),
        (
            f"relax {NEQUIP_FILES / 'allegro.nequip.pth'} s.extxyz",
            "is a compiled model (code, not weights)",
        ),
        (f"md {MODEL} bad.xyz", "ASE cannot read bad.xyz (XYZError"),
        (f"md {MODEL} s.extxyz --temperature -5", "--temperature must be 0 K or more, got -5."),
        (f"relax {MODEL} molecule.xyz --cell", "--cell needs a periodic structure with a cell"),
        (f"relax {MODEL} .", ".: a folder, not a file."),
        pytest.param(  # a RuntimeError the package raises for the user: its message only
            f"relax {MODEL} s.extxyz --device cuda",
            "error: device='cuda' was requested but CUDA is not available",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available"),
        ),
    ],
)
def test_errors_are_one_line_with_exit_status_1(command, message, capsys):
    write("s.extxyz", cu3au())
    write("molecule.xyz", Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]]))
    Path("bad.xyz").write_text("not a structure\n")
    status, _, err = run(capsys, f"{command} -q")
    assert status == 1
    assert err.startswith("allegro-ase: error: ") and err.count("\n") == 1, err
    assert message in err


@pytest.mark.parametrize("flag", ["--fmax -1", "--optimizer lbfgs", "--steps 0", "--no-such-flag"])
def test_bad_flags_are_usage_errors(flag, capsys):
    with pytest.raises(SystemExit) as exit:
        main(shlex.split(f"relax {MODEL} s.extxyz {flag}"))
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: allegro-ase")
    assert f"error: argument {flag.split()[0]}: " in err or f"arguments: {flag}" in err


def test_train_with_a_bad_config_says_so_in_one_line(capsys):
    Path("config.yaml").write_text("dataset: x.h5\nbogus: 1\n")
    status, _, err = run(capsys, "train config.yaml")
    assert status == 1
    assert err.startswith("allegro-ase: error: Unknown keys in training config: ['bogus']")
    assert err.count("\n") == 1
    status, _, err = run(capsys, "train config.yaml --debug")
    assert status == 1
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("allegro-ase: error: Unknown keys")


def test_unexpected_errors_name_their_type_and_point_to_debug(capsys, monkeypatch):
    from allegro_ase.commands import relax

    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke")

    write("s.extxyz", cu3au())
    monkeypatch.setattr(relax, "optimize", broken)
    status, _, err = run(capsys, f"relax {MODEL} s.extxyz -q")
    assert status == 1
    assert err == (
        "allegro-ase: error: RuntimeError: something inside broke "
        "(run again with --debug for the traceback)\n"
    )
    assert error_line(AttributeError("'NoneType' object has no attribute 'x'"), debug=True) == (
        "AttributeError: 'NoneType' object has no attribute 'x'"
    )
