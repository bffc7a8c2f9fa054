"""NVT molecular dynamics (Bussi or Langevin thermostat) of a Cu3Au alloy with the shipped ``allegro-emt-metals`` model.

This is the README's main job: no download, a few hundred steps at 600 K, printing
time, temperature and energies as it goes and a one-line summary at the end::

    python examples/md_nvt.py --steps 300
    python examples/md_nvt.py --thermostat langevin --full --plot md_nvt.png   # 10 ps

Bussi's stochastic velocity rescaling (``taut`` 100 fs) samples the canonical ensemble and
leaves the dynamics almost untouched; Langevin (friction 0.01 /fs) adds a friction and a random
force on every atom. Both take their random numbers from ``np.random.default_rng(--seed)``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ase import units
from ase.build import bulk
from ase.constraints import FixCom
from ase.md.bussi import Bussi
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary

from allegro_ase import AllegroCalculator


def main(argv: list[str] | None = None) -> dict:
    """Run the MD of the command line ``argv``; return the traces and a summary.

    Returns ``time`` (fs), ``temperature`` (K), ``epot`` and ``etot`` (eV), one value every
    ``steps // 10`` steps (and at the start), plus ``mean_temperature`` (K) over the second half
    and ``steps_per_second``.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=600.0, help="K")
    parser.add_argument("--model", default="allegro-emt-metals", help="name of a zoo model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--thermostat", choices=("bussi", "langevin"), default="bussi")
    parser.add_argument("--full", action="store_true", help="5000 steps (10 ps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PATH", help="write temperature and energy traces")
    args = parser.parse_args(argv)
    steps = 5000 if args.full else args.steps

    atoms = bulk("Cu", "fcc", a=3.75, cubic=True) * (3, 3, 3)  # 108 atoms
    atoms.numbers[::4] = 79  # Au on one of the four fcc sublattices: L1_2 Cu3Au
    atoms.calc = AllegroCalculator.from_pretrained(args.model, device=args.device)
    rng = np.random.default_rng(args.seed)
    masses = atoms.get_masses()[:, None]
    atoms.set_momenta(
        rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * units.kB * args.temperature)
    )
    Stationary(atoms)
    if args.thermostat == "bussi":
        dyn = Bussi(
            atoms, 2.0 * units.fs, temperature_K=args.temperature, taut=100 * units.fs, rng=rng
        )
    else:
        atoms.set_constraint(FixCom())  # the random forces would move the centre of mass
        dyn = Langevin(
            atoms,
            2.0 * units.fs,
            temperature_K=args.temperature,
            friction=0.01 / units.fs,
            fixcm=False,
            rng=rng,
        )
    trace = {"time": [], "temperature": [], "epot": [], "etot": []}

    def report() -> None:
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        trace["time"].append(dyn.get_time() / units.fs)
        trace["temperature"].append(atoms.get_temperature())
        trace["epot"].append(epot)
        trace["etot"].append(epot + ekin)
        print(
            f"t = {dyn.get_time() / units.fs:7.1f} fs   T = {atoms.get_temperature():7.1f} K   "
            f"E_pot = {epot:10.4f} eV   E_tot = {epot + ekin:10.4f} eV"
        )

    dyn.attach(report, interval=max(1, steps // 10))
    start = time.perf_counter()
    dyn.run(steps)
    elapsed = time.perf_counter() - start
    print(
        f"done: {steps} steps of {len(atoms)} atoms in {elapsed:.1f} s "
        f"({steps / elapsed:.1f} steps/s) on {atoms.calc.device}; "
        f"final T = {atoms.get_temperature():.0f} K"
    )
    result = {key: np.array(values) for key, values in trace.items()}
    second_half = result["time"] >= result["time"][-1] / 2
    result["mean_temperature"] = float(result["temperature"][second_half].mean())
    result["steps_per_second"] = steps / elapsed
    if args.plot:
        from allegro_ase.plots import md_traces

        traces = {
            "temperature (K)": result["temperature"],
            "energy (eV)": {"E_pot": result["epot"], "E_tot": result["etot"]},
        }
        title = f"NVT ({args.thermostat}, {args.temperature:.0f} K), {len(atoms)} atoms Cu3Au"
        print(f"plot: {md_traces(result['time'], traces, args.plot, title=title)}")
    return result


if __name__ == "__main__":
    main()
