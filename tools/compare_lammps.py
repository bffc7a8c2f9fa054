"""Run exported models in LAMMPS (pair_style allegro / nequip) and compare with our calculator.

    venv/bin/python tools/compare_lammps.py LMP WORKDIR

``LMP`` is a LAMMPS binary built with mir-group/pair_nequip_allegro and
``-DNEQUIP_AOT_COMPILE=ON`` against this venv's torch (see docs/lammps.md). For a tiny
random-weight float64 Allegro model (``pair_style allegro``, 1 and 2 MPI ranks) and NequIP
model (``pair_style nequip``, 1 rank), both with asymmetric per-edge-type cutoffs, it writes
``WORKDIR/<structure>.data``, runs ``run 0`` and a short NVE run, and compares energy, per-atom
energies, forces and the virial stress (LAMMPS bar -> ASE eV/Å³, with LAMMPS' own metal
``nktv2p``) with :class:`~allegro_ase.AllegroCalculator` evaluated on LAMMPS' own coordinates.
Prints a Markdown table; the exact LAMMPS input is ``WORKDIR/<case>/in.lmp``.

``--zoo NAME ...`` instead runs shipped (float32) zoo models, or model files (``.pt`` of ours,
the reference's ``.nequip.zip`` / ``.ckpt``), on two cells: a rattled 500-atom Cu3Au-like fcc
cell (cubic, LAMMPS' frame as is) and a rattled 256-atom one in a general triclinic cell (all
nine cell components non-zero; rotated into LAMMPS' lower-triangular frame for the data file,
LAMMPS' forces and stress rotated back). Allegro models run with ``pair_style allegro`` on 1 and
2 ranks, NequIP models with ``pair_style nequip`` on 1 rank, ``run 0`` and 200 NVE steps; the
table also gives LAMMPS' ms per step beside our calculator's ms per force call on the same cell.

``--reference-package REF.nequip.pt2`` (with one Allegro model in ``--zoo``, the one REF was
compiled from, e.g. by ``nequip-compile MODEL.nequip.zip REF.nequip.pt2 --mode aotinductor
--device cpu --target pair_allegro``) also times REF against our export of the same model in
the same LAMMPS binary: NVE runs on the 500-atom cell alternating ours / reference / ours ...
on 1 and 2 ranks, ms per step (LAMMPS' "Loop time") and CPU ms per step (times LAMMPS' "% CPU
use"), and first checks REF's energies, forces and stress against our calculator like ours.
Our export is cached as ``WORKDIR/<name>.nequip.pt2``: delete it to time a changed export.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc100
from ase.data import atomic_masses, atomic_numbers

from allegro_ase import AllegroCalculator
from allegro_ase.commands.common import load_energy_model
from allegro_ase.io.export import export_model
from allegro_ase.models import architecture_of, build_model

NKTV2P = 1.6021765e6  # LAMMPS' metal-units pressure factor: bar per eV/Å³
SPECIES = ["Cu", "Au", "H"]
sys.path.insert(0, str(Path(__file__).parent))
from check_export_with_reference import MODELS  # noqa: E402  (same tiny models)

INPUT = """\
units           metal
atom_style      atomic
boundary        {boundary}
newton          {newton}
read_data       {data}

pair_style      {pair_style}
pair_coeff      * * {model} {species}

compute         pea all pe/atom
compute         pvir all pressure NULL virial
thermo_style    custom step pe ke etotal c_pvir[1] c_pvir[2] c_pvir[3] c_pvir[4] c_pvir[5] c_pvir[6]
thermo_modify   format float %.17g
thermo          {thermo}
{dynamics}
dump            d all custom {dump_every} dump.txt id type x y z fx fy fz c_pea
dump_modify     d sort id format float %.17g
run             {steps}
"""
NVE = """\
velocity        all create 600.0 4928459 mom yes rot no dist gaussian
timestep        0.001
fix             nve all nve"""


def structures() -> dict[str, Atoms]:
    """108-atom Cu-Au-H alloy, a triclinic cell and an fcc(100) slab (boundary p p f)."""
    alloy = bulk("Cu", "fcc", a=3.7, cubic=True) * (3, 3, 3)
    alloy.numbers[::5] = 79
    alloy.numbers[3::17] = 1
    alloy.rattle(0.08, seed=0)
    cell = np.array([[7.8, 0.0, 0.0], [1.5, 7.2, 0.0], [0.9, -1.1, 8.4]])  # LAMMPS' form
    rng = np.random.default_rng(1)
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    triclinic = Atoms(
        numbers=[[29, 79, 29, 1][k % 4] for k in range(27)],
        scaled_positions=(grid + 0.5 + rng.uniform(-0.12, 0.12, grid.shape)) / 3,
        cell=cell,
        pbc=True,
    )
    slab = fcc100("Cu", size=(3, 3, 4), a=3.7, vacuum=5.0)
    slab.numbers[::4] = 79
    slab.rattle(0.05, seed=3)
    return {"alloy": alloy, "triclinic": triclinic, "slab": slab}


def zoo_structures() -> dict[str, Atoms]:
    """The shipped EMT models' test cells, every 4th atom Au, rattled.

    ``Cu-Au fcc``: 500 atoms in a cubic cell (a = 3.7 Å). ``Cu-Au triclinic``: 256 atoms, the
    4x4x4 cubic cell sheared (tilts 1.5, -1.2 and 2.0 Å) and then turned by a generic rotation,
    so that every component of the cell is non-zero and LAMMPS needs :func:`lammps_frame`.
    """
    cubic = bulk("Cu", "fcc", a=3.7, cubic=True) * (5, 5, 5)
    cubic.numbers[::4] = 79
    cubic.rattle(0.05, seed=2)
    triclinic = bulk("Cu", "fcc", a=3.7, cubic=True) * (4, 4, 4)
    triclinic.numbers[::4] = 79
    sheared = [[14.8, 0.0, 0.0], [1.5, 14.6, 0.0], [-1.2, 2.0, 15.0]]
    triclinic.set_cell(sheared, scale_atoms=True)
    triclinic.rotate(41.0, (1.0, -2.0, 3.0), rotate_cell=True)
    triclinic.rattle(0.05, seed=4)
    return {"Cu-Au fcc": cubic, "Cu-Au triclinic": triclinic}


def lammps_frame(atoms: Atoms) -> tuple[Atoms, np.ndarray]:
    """``atoms`` turned so that its cell is lower-triangular (LAMMPS' frame), and the turn.

    Returns the turned copy and the rotation ``Q`` (3x3, det +1) with ``cell_LAMMPS = cell @ Q``:
    positions and forces turn as ``x @ Q``, a stress (eV/Å³) as ``Q.T @ σ @ Q``. Components
    that are zero up to rounding are set exactly to zero.
    """
    q, r = np.linalg.qr(atoms.cell.array.T)  # cell.T = q r, so cell @ q = r.T (lower-triangular)
    signs = np.sign(np.diag(r))
    q, r = q * signs, r * signs[:, None]
    assert np.linalg.det(q) > 0, "a left-handed cell cannot be turned into LAMMPS' frame"
    turned = atoms.copy()
    turned.set_cell(np.tril(r.T), scale_atoms=False)
    turned.positions = atoms.positions @ q
    return turned, q


def write_data(atoms: Atoms, path: Path, species: list[str] = SPECIES) -> None:
    """LAMMPS data file (atom_style atomic); the cell must already be lower-triangular.

    Atom type k + 1 is ``species[k]``, the order of the ``pair_coeff`` line.
    """
    cell = atoms.cell.array.tolist()  # Python floats: repr round-trips
    assert cell[0][1] == cell[0][2] == cell[1][2] == 0, "rotate the cell into LAMMPS' frame"
    types = [species.index(s) + 1 for s in atoms.get_chemical_symbols()]
    lines = [
        "written by tools/compare_lammps.py",
        "",
        f"{len(atoms)} atoms",
        f"{len(species)} atom types",
        f"0.0 {cell[0][0]!r} xlo xhi",
        f"0.0 {cell[1][1]!r} ylo yhi",
        f"0.0 {cell[2][2]!r} zlo zhi",
        f"{cell[1][0]!r} {cell[2][0]!r} {cell[2][1]!r} xy xz yz",
        "",
        "Masses",
        "",
        *[f"{k + 1} {atomic_masses[atomic_numbers[s]]}" for k, s in enumerate(species)],
        "",
        "Atoms # atomic",
        "",
        *[
            f"{i + 1} {t} {x!r} {y!r} {z!r}"
            for i, (t, (x, y, z)) in enumerate(zip(types, atoms.positions.tolist(), strict=True))
        ],
    ]
    path.write_text("\n".join(lines) + "\n")


def run_lammps(lmp: str, workdir: Path, ranks: int, **fields) -> dict:
    """Write in.lmp, run it, return thermo rows and the last dump frame."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "in.lmp").write_text(INPUT.format(**fields))
    command = [lmp, "-in", "in.lmp", "-log", "log.lammps", "-screen", "none"]
    if ranks > 1:
        command = ["mpirun", "--allow-run-as-root", "-np", str(ranks), *command]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    with open(workdir / "stdout.txt", "w") as stdout:  # the pair style prints to stdout
        subprocess.run(command, cwd=workdir, check=True, env=env, stdout=stdout)
    elapsed = time.perf_counter() - start
    log = (workdir / "log.lammps").read_text().splitlines()
    first = next(k for k, line in enumerate(log) if line.split()[:2] == ["Step", "PotEng"])
    thermo, loop_seconds, cpu_use = [], float("nan"), float("nan")
    for k, line in enumerate(log[first + 1 :], first + 1):
        if line.startswith("Loop time"):  # "Loop time of T on P procs for S steps ..."
            loop_seconds = float(line.split()[3])
            # "... % CPU use with P MPI tasks x 1 OpenMP threads" (absent for run 0)
            usage = [ln for ln in log[k : k + 4] if "% CPU use" in ln]
            cpu_use = float(usage[0].split("%")[0]) / 100 if usage else float("nan")
            break
        thermo.append([float(x) for x in line.split()])
    frame = (workdir / "dump.txt").read_text().splitlines()
    last = max(k for k, line in enumerate(frame) if line.startswith("ITEM: ATOMS"))
    table = np.array([[float(x) for x in line.split()] for line in frame[last + 1 :]])
    return {
        "thermo": np.array(thermo),
        "atoms": table,
        "seconds": elapsed,
        "loop_seconds": loop_seconds,
        "cpu_use": cpu_use,
    }


def compare(model, atoms: Atoms, lammps: dict, turn: np.ndarray | None = None) -> dict:
    """Our calculator on LAMMPS' final coordinates vs LAMMPS' energies, forces and stress.

    ``atoms`` is the structure in its own frame and ``turn`` the rotation of
    :func:`lammps_frame` that took it into LAMMPS' (None: it already was there): LAMMPS'
    positions, forces and stress are turned back with ``turn.T`` before comparing.
    """
    turn = np.eye(3) if turn is None else turn
    atoms = atoms.copy()
    atoms.positions = lammps["atoms"][:, 2:5] @ turn.T
    atoms.calc = AllegroCalculator(model, device="cpu")
    row = lammps["thermo"][-1]
    xx, yy, zz, xy, xz, yz = -np.array(row[4:10]) / NKTV2P  # bar, compression > 0 -> eV/Å³
    sigma = turn @ np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]) @ turn.T
    stress = sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]  # ASE Voigt: xx yy zz yz xz xy
    return {
        "energy": abs(row[1] - atoms.get_potential_energy()),
        "energies": np.abs(lammps["atoms"][:, 8] - atoms.get_potential_energies()).max(),
        "forces": np.abs(lammps["atoms"][:, 5:8] @ turn.T - atoms.get_forces()).max(),
        "stress": np.abs(stress - atoms.get_stress()).max(),
        "drift": np.ptp(lammps["thermo"][:, 3]),
    }


HEADER = (
    "| model | pair style | structure | N | ranks | run | max abs. diff. E (eV) | "
    "e_i (eV) | F (eV/Å) | σ (eV/Å³) | NVE E_tot spread (eV) | LAMMPS s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)
PAIR_STYLES = {"allegro": ("allegro", "on", (1, 2)), "nequip": ("nequip", "off", (1,))}


def export_once(model, package: Path, pair_style: str) -> None:
    """Compile ``model`` for ``pair_style`` into ``package`` unless an earlier run did."""
    if not package.is_file():
        start = time.perf_counter()
        export_model(model, package, f"pair_{pair_style}")
        print(f"<!-- {package.name} compiled in {time.perf_counter() - start:.0f} s -->")


def diff_cells(diff: dict, steps: int) -> str:
    """The table cells of :func:`compare`'s differences (the drift only for a dynamics run)."""
    drift = f"{diff['drift']:.1e}" if steps else "-"
    return (
        f"{diff['energy']:.1e} | {diff['energies']:.1e} | {diff['forces']:.1e} | "
        f"{diff['stress']:.1e} | {drift}"
    )


def compare_zoo(lmp: str, workdir: Path, names: list[str], steps: int = 200) -> None:
    """Shipped models (or model files) in LAMMPS against our calculator on :func:`zoo_structures`."""
    print(HEADER.replace("LAMMPS s", "LAMMPS ms/step | ours ms/call") + "---|")
    for name in names:
        model, package = zoo_model(name, workdir)
        pair_style, _, all_ranks = PAIR_STYLES[architecture_of(model)]
        for label, atoms in zoo_structures().items():
            ours = _ms_per_call(model, atoms)
            runs = zoo_runs(lmp, workdir, model, package, label, atoms, all_ranks, steps)
            for ranks, n, diff, lammps in runs:
                run = f"NVE {n} fs" if n else "run 0"
                timing = f"{1e3 * lammps['loop_seconds'] / n:.0f} | {ours:.0f}" if n else "- | -"
                print(f"| {Path(name).name} | {pair_style} | {label} | {len(atoms)} | {ranks} | "
                      f"{run} | {diff_cells(diff, n)} | {timing} |")  # fmt: skip


def zoo_model(name: str, workdir: Path) -> tuple:
    """The model of a zoo name or a model file, and our export of it in ``workdir``."""
    model = load_energy_model(name)  # as the command line: zoo name, ours or the reference's
    pair_style = PAIR_STYLES[architecture_of(model)][0]
    package = workdir / f"{Path(name).name.split('.')[0]}.nequip.pt2"
    export_once(model, package, pair_style)
    return model, package


def zoo_runs(lmp, workdir, model, package, label, atoms, all_ranks, steps):
    """``run 0`` and (``steps`` > 0) an NVE run of ``package`` per rank count on ``atoms``.

    Yields (ranks, NVE steps or 0, :func:`compare`'s differences with our calculator,
    :func:`run_lammps`'s result).
    """
    pair_style, newton = PAIR_STYLES[architecture_of(model)][:2]
    species = list(model.config.type_names)
    turned, turn = lammps_frame(atoms)
    tag = f"{package.name.removesuffix('.nequip.pt2')}-{label.split()[-1]}"
    data = workdir / f"{tag}.data"
    data.parent.mkdir(parents=True, exist_ok=True)
    write_data(turned, data, species)
    for ranks in all_ranks:
        for n, dynamics in ((0, ""), (steps, NVE))[: 2 if steps else 1]:
            lammps = run_lammps(
                lmp, workdir / f"{tag}-{ranks}rank-{n}", ranks, boundary="p p p",
                newton=newton, data=data, pair_style=pair_style, model=package,
                species=" ".join(species), thermo=20, dynamics=dynamics, steps=n,
                dump_every=max(n, 1),
            )  # fmt: skip
            yield ranks, n, compare(model, atoms, lammps, turn), lammps


def time_reference(
    lmp: str, workdir: Path, name: str, reference: Path, steps: int = 100, rounds: int = 2
) -> None:
    """Our export and the reference's ``reference`` package, same model, in one LAMMPS binary.

    Checks the reference package against our calculator (``run 0`` on both zoo cells), then
    times NVE runs of ``steps`` steps on the 500-atom cell, on 1 and 2 ranks, in the order
    ours, reference, ours, ... (``rounds`` reference runs, ``rounds + 1`` of ours). Prints every
    run (ms per step from LAMMPS' "Loop time", CPU ms per step = that times LAMMPS' "% CPU
    use" / 100, per rank) and the medians with the ratio ours / reference.
    """
    model, ours = zoo_model(name, workdir)
    assert architecture_of(model) == "allegro", "--reference-package times pair_style allegro"
    packages = {"ours": ours, "reference": reference.resolve()}
    print("| package | structure | N | ranks | run | max abs. diff. E (eV) | e_i (eV) | "
          "F (eV/Å) | σ (eV/Å³) |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    results = {}
    for side, package in packages.items():
        for label, atoms in zoo_structures().items():
            for ranks, _, diff, lammps in zoo_runs(
                lmp, workdir / side, model, package, label, atoms, (1, 2), 0
            ):
                results[side, label, ranks] = lammps
                print(f"| {side} | {label} | {len(atoms)} | {ranks} | run 0 | "
                      f"{diff_cells(diff, 0).rsplit(' |', 1)[0]} |")  # fmt: skip
    for side, label, ranks in [key for key in results if key[0] == "ours"]:
        a, b = results[side, label, ranks], results["reference", label, ranks]
        print(f"<!-- ours vs reference, {label}, {ranks} rank(s), run 0: "
              f"|ΔE| = {abs(a['thermo'][-1, 1] - b['thermo'][-1, 1]):.1e} eV, "
              f"max |ΔF| = {np.abs(a['atoms'][:, 5:8] - b['atoms'][:, 5:8]).max():.1e} eV/Å -->")  # fmt: skip
    label, atoms = next(iter(zoo_structures().items()))
    species = list(model.config.type_names)
    data = workdir / "timing.data"
    write_data(atoms, data, species)
    print(
        f"\nNVE {steps} steps, {label}, {len(atoms)} atoms; our calculator: "
        f"{_ms_per_call(model, atoms):.0f} ms per call (1 thread), CPU "
        f"{_ms_per_call(model, atoms, cpu=True):.0f} ms\n"
    )
    print("| ranks | order | package | ms/step | CPU ms/step (per rank) |\n|---|---|---|---|---|")
    for ranks in (1, 2):
        times = {"ours": [], "reference": []}
        order = ["ours", "reference"] * rounds + ["ours"]
        for k, side in enumerate(order):
            lammps = run_lammps(
                lmp, workdir / f"timing-{side}-{ranks}rank-{k}", ranks, boundary="p p p",
                newton="on", data=data, pair_style="allegro", model=packages[side],
                species=" ".join(species), thermo=steps, dynamics=NVE, steps=steps,
                dump_every=steps,
            )  # fmt: skip
            ms = 1e3 * lammps["loop_seconds"] / steps
            times[side].append(ms)
            print(f"| {ranks} | {k + 1} | {side} | {ms:.0f} | {ms * lammps['cpu_use']:.0f} |")
        ours_ms, ref_ms = (float(np.median(times[side])) for side in ("ours", "reference"))
        print(f"| {ranks} | median | ours / reference | {ours_ms:.0f} / {ref_ms:.0f} = "
              f"{ours_ms / ref_ms:.2f} | |")  # fmt: skip


def _ms_per_call(model, atoms: Atoms, repeats: int = 5, cpu: bool = False) -> float:
    """Median ms of our calculator's energy + forces + stress call (1 torch thread).

    Wall time, or with ``cpu`` the calling thread's CPU time (where that one torch thread runs).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    atoms = atoms.copy()
    atoms.calc = AllegroCalculator(model, device="cpu")
    times = []
    for _ in range(repeats + 1):
        atoms.positions[0, 0] += 1e-4  # a new geometry every call
        clock = time.thread_time if cpu else time.perf_counter
        start = clock()
        atoms.get_stress()
        times.append(clock() - start)
    torch.set_num_threads(threads)
    return 1e3 * float(np.median(times[1:]))


def main(lmp: str, workdir: Path) -> None:
    """The random-weight float64 models of ``MODELS`` on :func:`structures`."""
    print(HEADER)
    for architecture, (pair_style, newton, all_ranks) in PAIR_STYLES.items():
        model = build_model(architecture, MODELS[architecture])
        package = workdir / f"{architecture}-pair_{pair_style}.nequip.pt2"
        export_once(model, package, pair_style)
        finals = {}
        for name, atoms in structures().items():
            data = workdir / f"{name}.data"
            write_data(atoms, data)
            boundary = " ".join("p" if p else "f" for p in atoms.pbc)
            for ranks in all_ranks:
                for run, steps, dynamics in (("run 0", 0, ""), ("NVE 100 fs", 100, NVE)):
                    case = workdir / f"{architecture}-{name}-{ranks}rank-{steps}"
                    lammps = run_lammps(
                        lmp, case, ranks, boundary=boundary, newton=newton, data=data,
                        pair_style=pair_style, model=package, species=" ".join(SPECIES),
                        thermo=10, dynamics=dynamics, steps=steps, dump_every=max(steps, 1),
                    )  # fmt: skip
                    diff = compare(model, atoms, lammps)
                    finals[name, ranks, steps] = lammps["atoms"]
                    print(f"| {architecture} | {pair_style} | {name} | {len(atoms)} | {ranks} | "
                          f"{run} | {diff_cells(diff, steps)} | {lammps['seconds']:.1f} |")  # fmt: skip
            if len(all_ranks) > 1:
                one, two = finals[name, 1, 100], finals[name, 2, 100]
                print(f"<!-- {architecture} {name}: 1 vs 2 ranks after NVE, max |Δx| = "
                      f"{np.abs(one[:, 2:5] - two[:, 2:5]).max():.1e} Å -->")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lmp", help="LAMMPS binary with the pair_nequip_allegro styles")
    parser.add_argument("workdir", type=Path)
    parser.add_argument(
        "--zoo", nargs="+", metavar="NAME", help="shipped models or model files to run instead"
    )
    parser.add_argument(
        "--reference-package", type=Path, metavar="REF.nequip.pt2",
        help="with one --zoo Allegro model: time this reference export of it beside ours",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=200, help="NVE steps per run")
    parser.add_argument(
        "--rounds", type=int, default=2, help="reference timing runs per rank count"
    )
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.reference_package:
        assert args.zoo and len(args.zoo) == 1, "--reference-package needs one --zoo model"
        time_reference(
            args.lmp, args.workdir, args.zoo[0], args.reference_package, args.steps, args.rounds
        )
    elif args.zoo:
        compare_zoo(args.lmp, args.workdir, args.zoo, args.steps)
    else:
        main(args.lmp, args.workdir)
