"""`allegro-ase eval|md|relax|neb|export|train` on the shipped allegro-emt-metals model.

Every command runs in-process through ``cli.main`` on small structures and a few steps; the
numbers are checked against the calculator or ASE called directly. Only the import test needs
a subprocess.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import add_adsorbate, bulk, fcc100
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.io import read, write
from ase.mep import NEB
from ase.optimize import BFGS

from allegro_ase import AllegroCalculator
from allegro_ase.cli import main
from allegro_ase.commands.common import load_energy_model
from allegro_ase.datasets import FrameWriter, read_hdf5

MODEL = "allegro-emt-metals"
DATA = Path(__file__).parent / "data"
HELDOUT = DATA / "heldout" / "allegro-emt-metals.h5"
NEQUIP_FILES = DATA / "nequip_files"
# held-out errors of the model card (meV/atom, meV/Å); a few frames scatter around them
CARD_ENERGY_MAE, CARD_FORCES_MAE = 0.60, 7.26
TABLE_RESOLUTION = 1e-4  # the printed table has four decimals
# predictions read back as labels: the positions lost their 9th decimal in the extxyz file, which
# moves float32 forces by ~1e-7 eV/Å (1e-4 meV/Å)
ROUND_TRIP_ATOL = 1e-3
EXTXYZ_ATOL = 1e-8  # extxyz writes arrays with 8 decimals
F32_RTOL = 1e-6
BARRIER_ATOL = 0.03  # eV, the model against EMT for the Au hop on Al(100), as the card states


@pytest.fixture(scope="module")
def calc():
    return AllegroCalculator.from_pretrained(MODEL, device="cpu")


@pytest.fixture(autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def error_table(out: str) -> dict[str, tuple[float, float]]:
    rows = [
        line.split()
        for line in out.splitlines()
        if line.split()[:1] in (["energy_per_atom"], ["forces"], ["stress"])
    ]
    return {row[0]: (float(row[2]), float(row[3])) for row in rows}


def cu3au(rattle: float = 0.05, a: float = 3.7):
    atoms = bulk("Cu", "fcc", a=a, cubic=True) * 2  # 32 atoms
    atoms.numbers[::4] = 79
    atoms.rattle(rattle, seed=1)
    return atoms


# --- the command line itself -------------------------------------------------------------


def test_help_of_every_command_imports_neither_torch_nor_e3nn_nor_ase_calculators():
    commands = [[]] + [[name] for name in ("eval", "md", "relax", "neb", "train", "export")]
    commands += [["models", action] for action in ("list", "info", "fetch", "verify")]
    script = (
        "import sys\n"
        "from allegro_ase.cli import main\n"
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


# --- eval ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heldout_subset(tmp_path_factory):
    """Eight held-out frames (bulk, alloys, slabs, clusters...) written as our HDF5 schema."""
    frames = read_hdf5(HELDOUT)[::83][:8]
    path = tmp_path_factory.mktemp("eval") / "subset.h5"
    with FrameWriter(path, method="EMT") as writer:
        writer.append(frames)
    return path, frames


def test_eval_against_emt_labels_gives_the_calculators_errors(
    heldout_subset, calc, capsys, tmp_path
):
    path, frames = heldout_subset
    out_file, plot = tmp_path / "pred.extxyz", tmp_path / "parity.png"
    status, out, _ = run(capsys, "eval", MODEL, path, "-o", out_file, "--plot", plot, "-q")
    assert status == 0
    table = error_table(out)
    energy, forces, stress = [], [], []
    for frame in frames:
        atoms = frame.to_atoms()
        atoms.calc = calc
        energy.append((atoms.get_potential_energy() - frame.energy) / len(atoms))
        forces.append(atoms.get_forces() - frame.forces)
        if frame.stress is not None:
            stress.append(atoms.get_stress() - frame.to_atoms().get_stress())
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
    assert plot.stat().st_size > 10_000
    predicted = read(out_file, index=":")
    assert len(predicted) == len(frames)
    assert predicted[0].info["ref_energy"] == pytest.approx(frames[0].energy, abs=EXTXYZ_ATOL)
    np.testing.assert_allclose(
        predicted[0].arrays["ref_forces"], frames[0].forces, atol=EXTXYZ_ATOL
    )

    # the predictions, read back as labels, are the model's own: zero error
    status, out, _ = run(capsys, "eval", MODEL, out_file, "-q")
    assert status == 0
    assert set(error_table(out)) == set(expected)
    for mae, rmse in error_table(out).values():
        assert mae < ROUND_TRIP_ATOL and rmse < ROUND_TRIP_ATOL


def test_eval_without_labels_predicts_only(calc, capsys, tmp_path):
    atoms = cu3au()
    write(tmp_path / "bare.xyz", atoms)  # plain xyz: positions only
    status, out, _ = run(
        capsys, "eval", MODEL, tmp_path / "bare.xyz", "-o", tmp_path / "p.xyz", "-q"
    )
    assert status == 0
    assert "no reference labels in the input: predictions only" in out
    atoms.calc = calc
    (predicted,) = read(tmp_path / "p.xyz", index=":")
    assert predicted.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-6)


# --- relax ---------------------------------------------------------------------------------


def test_relax_brings_fmax_below_the_target(calc, capsys, tmp_path):
    write(tmp_path / "start.extxyz", cu3au())
    status, out, err = run(
        capsys,
        "relax",
        MODEL,
        tmp_path / "start.extxyz",
        "--fmax",
        "0.02",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--optimizer",
        "bfgs",
        "-o",
        tmp_path / "end.extxyz",
    )
    assert status == 0, err
    relaxed = read(tmp_path / "end.extxyz")
    relaxed.calc = calc
    assert np.linalg.norm(relaxed.get_forces(), axis=1).max() < 0.02
    assert f"E = {relaxed.get_potential_energy():.6f} eV" in out
    assert out.startswith("converged in ")
    assert torch.get_num_threads() == 1


def test_relax_with_cell_removes_the_stress(calc, capsys, tmp_path):
    start = cu3au(rattle=0.02, a=3.6)  # compressed: EMT's Cu3Au has a = 3.71 Å
    write(tmp_path / "start.extxyz", start)
    fmax = 0.02
    status, out, _ = run(
        capsys,
        "relax",
        MODEL,
        tmp_path / "start.extxyz",
        "--cell",
        "--fmax",
        fmax,
        "-q",
        "-o",
        tmp_path / "end.extxyz",
    )
    assert status == 0
    relaxed = read(tmp_path / "end.extxyz")
    relaxed.calc = calc
    # FrechetCellFilter's cell forces are virial / N: |stress| < fmax * N / V at convergence
    assert np.abs(relaxed.get_stress()).max() < fmax * len(relaxed) / relaxed.get_volume()
    assert relaxed.get_volume() > 1.05 * start.get_volume()


def test_relax_that_runs_out_of_steps_exits_3_and_still_writes(capsys, tmp_path):
    write(tmp_path / "start.extxyz", cu3au(rattle=0.2))
    status, out, err = run(
        capsys,
        "relax",
        MODEL,
        tmp_path / "start.extxyz",
        "--steps",
        "2",
        "-q",
        "-o",
        tmp_path / "end.extxyz",
    )
    assert status == 3
    assert out.startswith("NOT converged in 2 steps")
    assert err.startswith("allegro-ase: relax did not converge: fmax ")
    assert len(read(tmp_path / "end.extxyz")) == 32


# --- md ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ensemble", ["nve", "langevin", "bussi", "nose-hoover", "npt"])
def test_md_writes_every_interval_of_the_requested_steps(ensemble, capsys, tmp_path):
    write(tmp_path / "start.extxyz", cu3au(rattle=0.0))
    traj, log = tmp_path / "md.traj", tmp_path / "md.log"
    status, out, _ = run(
        capsys,
        "md",
        MODEL,
        tmp_path / "start.extxyz",
        "--ensemble",
        ensemble,
        "--steps",
        "6",
        "--interval",
        "2",
        "--temperature",
        "500",
        "--traj",
        traj,
        "--log",
        log,
        "-q",
    )
    assert status == 0
    frames = read(traj, index=":")
    assert len(frames) == 6 // 2 + 1  # steps 0, 2, 4, 6
    assert len(log.read_text().splitlines()) == 1 + 4
    assert out.startswith(f"6 steps (0.006 ps) of 32 atoms, {ensemble}")
    positions = np.array([frame.positions for frame in frames])
    assert np.abs(positions[-1] - positions[0]).max() > 1e-3  # the atoms moved
    if ensemble == "nve":
        total = [frame.get_potential_energy() + frame.get_kinetic_energy() for frame in frames]
        assert np.ptp(total) < 1e-3 * len(frames[0])  # eV: 1 fs steps conserve energy


def test_md_seed_fixes_the_run_and_leaves_the_global_rng_alone(capsys, tmp_path):
    write(tmp_path / "start.extxyz", cu3au(rattle=0.0))
    state = np.random.get_state()
    finals = []
    for seed, name in ((1, "a"), (1, "b"), (2, "c")):
        argv = ["md", MODEL, tmp_path / "start.extxyz", "--ensemble", "langevin", "--steps", "3"]
        argv += ["--interval", "3", "--seed", seed, "--traj", tmp_path / f"{name}.extxyz", "-q"]
        assert run(capsys, *argv)[0] == 0
        finals.append(read(tmp_path / f"{name}.extxyz").positions)
    np.testing.assert_array_equal(finals[0], finals[1])
    assert np.abs(finals[0] - finals[2]).max() > 1e-6
    after = np.random.get_state()
    assert np.array_equal(state[1], after[1]) and state[2:] == after[2:]


# --- neb -----------------------------------------------------------------------------------


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


def test_neb_barrier_of_the_au_hop_is_emts(capsys, tmp_path):
    initial, final = au_hop_on_al100()
    write(tmp_path / "initial.traj", initial)
    write(tmp_path / "final.traj", final)
    status, out, _ = run(
        capsys,
        "neb",
        MODEL,
        tmp_path / "initial.traj",
        tmp_path / "final.traj",
        "--images",
        3,
        "--relax-endpoints",
        "--optimizer",
        "bfgs",
        "--traj",
        tmp_path / "band.extxyz",
        "-q",
    )
    assert status == 0
    line = next(line for line in out.splitlines() if line.startswith("barrier:"))
    forward, backward = (float(line.split()[k]) for k in (2, 5))
    band = read(tmp_path / "band.extxyz", index=":")
    energies = [image.get_potential_energy() for image in band]
    assert len(band) == 5
    assert forward == pytest.approx(max(energies) - energies[0], abs=1e-4)
    assert backward == pytest.approx(max(energies) - energies[-1], abs=1e-4)
    assert forward == pytest.approx(backward, abs=0.01)  # a symmetric hop
    assert forward == pytest.approx(emt_barrier(*au_hop_on_al100(), 3, 0.05), abs=BARRIER_ATOL)


def test_neb_refuses_ends_with_different_atoms(capsys, tmp_path):
    initial, _ = au_hop_on_al100()
    write(tmp_path / "initial.traj", initial)
    write(tmp_path / "final.traj", initial[:-1])
    status, _, err = run(
        capsys, "neb", MODEL, tmp_path / "initial.traj", tmp_path / "final.traj", "-q"
    )
    assert status == 1
    assert err == (
        "allegro-ase: error: INITIAL (Al12Au, 13 atoms) and FINAL (Al12, 12 atoms) must hold "
        "the same atoms in the same order.\n"
    )


# --- reference-framework models ------------------------------------------------------------


@pytest.mark.parametrize("name", ["allegro.ckpt", "nequip.nequip.zip"])
def test_reference_files_load_as_from_nequip_does(name, capsys, tmp_path):
    atoms = cu3au()
    write(tmp_path / "bare.extxyz", atoms)
    path = NEQUIP_FILES / name
    status, _, _ = run(
        capsys, "eval", path, tmp_path / "bare.extxyz", "-o", tmp_path / "p.extxyz", "-q"
    )
    assert status == 0
    atoms.calc = AllegroCalculator.from_nequip(path, device="cpu")
    predicted = read(tmp_path / "p.extxyz")
    # the same model; float32 sums may be added in another order
    expected = atoms.get_potential_energy()
    assert predicted.get_potential_energy() == pytest.approx(expected, rel=F32_RTOL)


def test_export_takes_a_reference_checkpoint(capsys, tmp_path):
    # the NequIP checkpoint loads (through allegro_ase.nequip_files) and is then refused by
    # the target, not by the loader
    path = NEQUIP_FILES / "nequip.ckpt"
    status, _, err = run(
        capsys, "export", path, tmp_path / "x.nequip.pt2", "--target", "pair_allegro"
    )
    assert status == 1
    assert err.startswith("allegro-ase: error: --target pair_allegro needs a strictly local model")
    assert "got NequIP" in err
    assert type(load_energy_model(str(path))).__name__ == "NequIPModel"


# --- errors --------------------------------------------------------------------------------


@pytest.fixture
def structure(tmp_path):
    write(tmp_path / "s.extxyz", cu3au())
    return tmp_path / "s.extxyz"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["relax", MODEL, "missing.extxyz"], "missing.extxyz: no such file."),
        (
            ["md", "allegro-emt-metlas", "{s}"],
            "Unknown model 'allegro-emt-metlas'. Did you mean 'allegro-emt-metals'",
        ),
        (["eval", "no/such/model.pt", "{s}"], "no/such/model.pt: no such model file"),
        (
            ["relax", str(NEQUIP_FILES / "allegro.nequip.pth"), "{s}"],
            "is a compiled model (code, not weights)",
        ),
        (["md", MODEL, "{bad}"], "ASE cannot read "),
        (["md", MODEL, "{s}", "--temperature", "-5"], "--temperature must be 0 K or more, got -5."),
    ],
)
def test_errors_are_one_line_with_exit_status_1(argv, message, structure, capsys):
    bad = structure.with_name("bad.xyz")
    bad.write_text("not a structure\n")
    argv = [arg.format(s=structure, bad=bad) for arg in argv]
    status, _, err = run(capsys, *argv, "-q")
    assert status == 1
    assert err.startswith("allegro-ase: error: ") and err.count("\n") == 1, err
    assert message in err


def test_bad_flags_are_usage_errors(structure, capsys):
    for argv in (["--fmax", "-1"], ["--optimizer", "lbfgs"], ["--no-such-flag"]):
        with pytest.raises(SystemExit) as exit:
            main(["relax", MODEL, str(structure), *argv])
        assert exit.value.code == 2
        err = capsys.readouterr().err
        assert "error: " in err and argv[0] in err


def test_train_with_a_bad_config_says_so_in_one_line(capsys, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("dataset: x.h5\nbogus: 1\n")
    status, _, err = run(capsys, "train", config)
    assert status == 1
    assert err.startswith("allegro-ase: error: Unknown keys in training config: ['bogus']")
    assert err.count("\n") == 1
    status, _, err = run(capsys, "train", config, "--debug")
    assert status == 1
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("allegro-ase: error: Unknown keys")


def test_unexpected_errors_name_their_type_and_point_to_debug(capsys, monkeypatch, structure):
    from allegro_ase.commands import relax

    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(relax, "optimize", broken)
    status, _, err = run(capsys, "relax", MODEL, structure, "-q")
    assert status == 1
    assert err == (
        "allegro-ase: error: RuntimeError: something inside broke "
        "(run again with --debug for the traceback)\n"
    )
