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

``--zoo NAME ...`` instead runs shipped (float32) zoo models on a rattled 500-atom Cu3Au-like fcc
cell: Allegro models with ``pair_style allegro`` on 1 and 2 ranks, NequIP models with
``pair_style nequip`` on 1 rank, ``run 0`` and 200 NVE steps, and also reports LAMMPS' ms per step
beside our calculator's ms per force call on the same cell.
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
from allegro_ase.io import load_model
from allegro_ase.io.export import export_model
from allegro_ase.models import architecture_of, build_model
from allegro_ase.zoo import resolve

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


def zoo_structure() -> Atoms:
    """500-atom fcc Cu cell with every 4th atom Au, rattled: the shipped EMT models' test cell."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (5, 5, 5)
    atoms.numbers[::4] = 79
    atoms.rattle(0.05, seed=2)
    return atoms


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
    thermo, loop_seconds = [], float("nan")
    for line in log[first + 1 :]:
        if line.startswith("Loop time"):  # "Loop time of T on P procs for S steps ..."
            loop_seconds = float(line.split()[3])
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
    }


def compare(model, atoms: Atoms, lammps: dict) -> dict:
    """Our calculator on LAMMPS' final coordinates vs LAMMPS' energies, forces and stress."""
    atoms = atoms.copy()
    atoms.positions = lammps["atoms"][:, 2:5]
    atoms.calc = AllegroCalculator(model, device="cpu")
    row = lammps["thermo"][-1]
    stress = -np.array(row[4:10])[[0, 1, 2, 5, 4, 3]] / NKTV2P  # LAMMPS order -> ASE Voigt
    return {
        "energy": abs(row[1] - atoms.get_potential_energy()),
        "energies": np.abs(lammps["atoms"][:, 8] - atoms.get_potential_energies()).max(),
        "forces": np.abs(lammps["atoms"][:, 5:8] - atoms.get_forces()).max(),
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
    """Shipped models in LAMMPS against our calculator on :func:`zoo_structure`."""
    atoms = zoo_structure()
    print(HEADER.replace("LAMMPS s", "LAMMPS ms/step | ours ms/call"))
    for name in names:
        model = load_model(resolve(name))
        pair_style, newton, all_ranks = PAIR_STYLES[architecture_of(model)]
        species = list(model.config.type_names)
        package = workdir / f"{name}.nequip.pt2"
        export_once(model, package, pair_style)
        data = workdir / f"{name}.data"
        write_data(atoms, data, species)
        ours = _ms_per_call(model, atoms)
        for ranks in all_ranks:
            for run, n, dynamics in (("run 0", 0, ""), (f"NVE {steps} fs", steps, NVE)):
                lammps = run_lammps(
                    lmp, workdir / f"{name}-{ranks}rank-{n}", ranks, boundary="p p p",
                    newton=newton, data=data, pair_style=pair_style, model=package,
                    species=" ".join(species), thermo=20, dynamics=dynamics, steps=n,
                    dump_every=max(n, 1),
                )  # fmt: skip
                diff = compare(model, atoms, lammps)
                timing = f"{1e3 * lammps['loop_seconds'] / n:.0f} | {ours:.0f}" if n else "- | -"
                print(f"| {name} | {pair_style} | Cu-Au fcc | {len(atoms)} | {ranks} | {run} | "
                      f"{diff_cells(diff, n)} | {timing} |")  # fmt: skip


def _ms_per_call(model, atoms: Atoms, repeats: int = 5) -> float:
    """Median ms of our calculator's energy + forces + stress call (1 torch thread)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    atoms = atoms.copy()
    atoms.calc = AllegroCalculator(model, device="cpu")
    times = []
    for _ in range(repeats + 1):
        atoms.positions[0, 0] += 1e-4  # a new geometry every call
        start = time.perf_counter()
        atoms.get_stress()
        times.append(time.perf_counter() - start)
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
    parser.add_argument("--zoo", nargs="+", metavar="NAME", help="shipped models to run instead")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.zoo:
        compare_zoo(args.lmp, args.workdir, args.zoo)
    else:
        main(args.lmp, args.workdir)
