"""NVE molecular dynamics (velocity Verlet) of Cu3Au: energy conservation of the model against EMT.

Both runs start from the same positions and Maxwell-Boltzmann velocities. The drift is the slope
of a straight line fitted to the total energy per atom against time (eV/atom/ps); the spread is
the standard deviation of the total energy about that line. A model whose forces are the exact
gradient of its energy conserves energy as well as the integrator allows: its drift should be
as small as EMT's at the same time step::

    python examples/md_nve.py --full --plot md_nve.png
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator
from ase.calculators.emt import EMT
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from allegro_ase import AllegroCalculator


def cu3au(size: int = 3) -> Atoms:
    """Build L1_2 Cu3Au, a = 3.72 Å, as ``size``³ cubic cells (4 size³ atoms)."""
    atoms = bulk("Cu", "fcc", a=3.72, cubic=True) * (size, size, size)
    atoms.numbers[::4] = 79  # Au on one of the four fcc sublattices
    return atoms


def run_nve(
    atoms: Atoms, calc: Calculator, steps: int, timestep_fs: float, temperature: float, seed: int
) -> dict[str, np.ndarray]:
    """Run NVE MD on a copy of ``atoms``; return per-step traces.

    Velocities are drawn at 2 ``temperature`` (half goes into potential energy) with
    ``np.random.default_rng(seed)``. Returns arrays of length ``steps + 1``: ``time`` (fs),
    ``epot``, ``etot`` (eV/atom) and ``temperature`` (K).
    """
    atoms = atoms.copy()
    atoms.calc = calc
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(atoms.get_masses()[:, None] * units.kB * 2 * temperature)  # Maxwell-Boltzmann
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * sigma)
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep_fs * units.fs)
    trace = {"time": [], "epot": [], "etot": [], "temperature": []}

    def record() -> None:
        epot = atoms.get_potential_energy() / len(atoms)
        trace["time"].append(dyn.get_time() / units.fs)
        trace["epot"].append(epot)
        trace["etot"].append(epot + atoms.get_kinetic_energy() / len(atoms))
        trace["temperature"].append(atoms.get_temperature())

    dyn.attach(record, interval=1)
    dyn.run(steps)
    return {key: np.array(values) for key, values in trace.items()}


def drift(trace: dict[str, np.ndarray]) -> tuple[float, float]:
    """Drift (eV/atom/ps) and spread about it (eV/atom) of the total energy per atom."""
    t_ps = trace["time"] / 1000.0
    slope, intercept = np.polyfit(t_ps, trace["etot"], 1)
    return float(slope), float(np.std(trace["etot"] - (slope * t_ps + intercept)))


def main(argv: list[str] | None = None) -> dict:
    """Print and return {method: {"drift", "spread", "temperature", "trace"}} for EMT and the model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="allegro-emt-metals", help="name of a zoo model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--full", action="store_true", help="5000 steps (10 ps)")
    parser.add_argument("--timestep", type=float, default=2.0, help="fs")
    parser.add_argument("--temperature", type=float, default=600.0, help="K")
    parser.add_argument("--size", type=int, default=3, help="cubic cells per side (4 size³ atoms)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PATH", help="write the energy and temperature traces")
    args = parser.parse_args(argv)
    steps = 5000 if args.full else args.steps

    atoms = cu3au(args.size)
    calcs = {
        "EMT": EMT(),
        args.model: AllegroCalculator.from_pretrained(args.model, device=args.device),
    }
    results = {}
    print(f"NVE, {len(atoms)} atoms of Cu3Au, {steps} steps of {args.timestep} fs")
    for method, calc in calcs.items():
        start = time.perf_counter()
        trace = run_nve(atoms, calc, steps, args.timestep, args.temperature, args.seed)
        elapsed = time.perf_counter() - start
        slope, spread = drift(trace)
        results[method] = {
            "drift": slope,
            "spread": spread,
            "temperature": float(trace["temperature"].mean()),
            "trace": trace,
        }
        print(
            f"{method:20s} drift {slope:+9.1e} eV/atom/ps   spread {1e6 * spread:7.1f} µeV/atom"
            f"   <T> {results[method]['temperature']:6.1f} K   ({steps / elapsed:.1f} steps/s)"
        )
    if args.plot:
        from allegro_ase.plots import md_traces

        time_fs = results["EMT"]["trace"]["time"]
        traces = {
            "E_tot − E_tot(0) (meV/atom)": {
                m: 1000 * (r["trace"]["etot"] - r["trace"]["etot"][0]) for m, r in results.items()
            },
            "E_pot (eV/atom)": {m: r["trace"]["epot"] for m, r in results.items()},
            "temperature (K)": {m: r["trace"]["temperature"] for m, r in results.items()},
        }
        print(f"plot: {md_traces(time_fs, traces, args.plot, title='NVE, Cu3Au')}")
    return results


if __name__ == "__main__":
    main()
