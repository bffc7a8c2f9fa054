"""NPT molecular dynamics (MTK barostat) of Cu3Au: volume at temperature, model against EMT.

ASE's Martyna-Tobias-Klein integrator with Nose-Hoover chains (``ase.md.nose_hoover_chain``):
``IsotropicMTKNPT`` scales the cubic cell as a whole, ``--anisotropic`` uses ``MTKNPT`` (each
cell vector free). Both runs start from the same positions and velocities; the mean volume
per atom and the lattice constant over the second half of the run measure the thermal
expansion each method gives::

    python examples/md_npt.py --full --plot md_npt.png
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator
from ase.calculators.emt import EMT
from ase.md.nose_hoover_chain import MTKNPT, IsotropicMTKNPT
from ase.md.velocitydistribution import Stationary

from allegro_ase import AllegroCalculator


def cu3au(size: int = 3, a: float = 3.75) -> Atoms:
    """Build L1_2 Cu3Au as ``size``³ cubic cells (4 size³ atoms) of side ``a`` (Å).

    3.75 Å is about EMT's lattice constant at 600 K (3.707 Å at 0 K): a start far from the
    equilibrium volume sets the MTK barostat ringing with an amplitude of the difference.
    """
    atoms = bulk("Cu", "fcc", a=a, cubic=True) * (size, size, size)
    atoms.numbers[::4] = 79  # Au on one of the four fcc sublattices
    return atoms


def run_npt(
    atoms: Atoms,
    calc: Calculator,
    steps: int,
    temperature: float,
    pressure_gpa: float = 0.0,
    anisotropic: bool = False,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Run NPT MD on a copy of ``atoms``: 2 fs steps, tdamp 100 and pdamp 1000 steps (ASE's advice).

    Returns arrays of length ``steps + 1``: ``time`` (fs), ``temperature`` (K), ``epot``
    (eV/atom), ``volume`` (Å³/atom) and ``pressure`` (GPa, -trace(stress)/3 with the kinetic part).
    """
    atoms = atoms.copy()
    atoms.calc = calc
    rng = np.random.default_rng(seed)
    # Maxwell-Boltzmann at 2 T: in the perfect crystal half the kinetic energy goes into potential
    sigma = np.sqrt(atoms.get_masses()[:, None] * units.kB * 2 * temperature)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * sigma)
    Stationary(atoms)
    integrator = MTKNPT if anisotropic else IsotropicMTKNPT
    dyn = integrator(
        atoms,
        timestep=2.0 * units.fs,
        temperature_K=temperature,
        pressure_au=pressure_gpa * units.GPa,
        tdamp=200 * units.fs,
        pdamp=2000 * units.fs,
    )
    trace = {"time": [], "temperature": [], "epot": [], "volume": [], "pressure": []}

    def record() -> None:
        trace["time"].append(dyn.get_time() / units.fs)
        trace["temperature"].append(atoms.get_temperature())
        trace["epot"].append(atoms.get_potential_energy() / len(atoms))
        trace["volume"].append(atoms.get_volume() / len(atoms))
        stress = atoms.get_stress(include_ideal_gas=True)
        trace["pressure"].append(-stress[:3].mean() / units.GPa)

    dyn.attach(record, interval=1)
    dyn.run(steps)
    return {key: np.array(values) for key, values in trace.items()}


def main(argv: list[str] | None = None) -> dict:
    """Print and return {method: {"volume", "lattice_constant", "temperature", "trace"}}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="allegro-emt-metals", help="name of a zoo model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--full", action="store_true", help="5000 steps (10 ps)")
    parser.add_argument("--temperature", type=float, default=600.0, help="K")
    parser.add_argument("--pressure", type=float, default=0.0, help="GPa")
    parser.add_argument("--anisotropic", action="store_true", help="MTKNPT: each cell vector free")
    parser.add_argument("--size", type=int, default=3, help="cubic cells per side (4 size³ atoms)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PATH", help="write energy, temperature, volume traces")
    args = parser.parse_args(argv)
    steps = 5000 if args.full else args.steps

    atoms = cu3au(args.size)
    calcs = {
        "EMT": EMT(),
        args.model: AllegroCalculator.from_pretrained(args.model, device=args.device),
    }
    print(
        f"NPT ({'MTKNPT' if args.anisotropic else 'IsotropicMTKNPT'}), {len(atoms)} atoms of Cu3Au, "
        f"{steps} steps of 2 fs, {args.temperature:.0f} K, {args.pressure} GPa; "
        f"start {atoms.get_volume() / len(atoms):.3f} Å³/atom; means over the second half:"
    )
    results = {}
    for method, calc in calcs.items():
        start = time.perf_counter()
        trace = run_npt(
            atoms, calc, steps, args.temperature, args.pressure, args.anisotropic, args.seed
        )
        elapsed = time.perf_counter() - start
        half = slice(len(trace["time"]) // 2, None)
        volume = float(trace["volume"][half].mean())
        results[method] = {
            "volume": volume,
            "lattice_constant": (4 * volume) ** (1 / 3),
            "temperature": float(trace["temperature"][half].mean()),
            "pressure": float(trace["pressure"][half].mean()),
            "trace": trace,
        }
        r = results[method]
        print(
            f"{method:20s} V {volume:7.3f} Å³/atom   a {r['lattice_constant']:.4f} Å   "
            f"T {r['temperature']:6.1f} K   P {r['pressure']:+6.2f} GPa   ({steps / elapsed:.1f} steps/s)"
        )
    if args.plot:
        from allegro_ase.plots import md_traces

        traces = {
            "E_pot (eV/atom)": {m: r["trace"]["epot"] for m, r in results.items()},
            "temperature (K)": {m: r["trace"]["temperature"] for m, r in results.items()},
            "volume (Å³/atom)": {m: r["trace"]["volume"] for m, r in results.items()},
        }
        time_fs = results["EMT"]["trace"]["time"]
        print(f"plot: {md_traces(time_fs, traces, args.plot, title='NPT, Cu3Au')}")
    return results


if __name__ == "__main__":
    main()
