"""NVT molecular dynamics (Bussi thermostat) of a Cu3Au alloy with the shipped ``allegro-emt-metals`` model.

This is the README's main job: no download, a few hundred steps at 600 K, printing
time, temperature and energies as it goes and a one-line summary at the end::

    python examples/md_nvt.py --steps 300
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ase import units
from ase.build import bulk
from ase.md.bussi import Bussi
from ase.md.velocitydistribution import Stationary

from allegro_ase import AllegroCalculator


def main(argv: list[str] | None = None) -> None:
    """Run the MD of the command line ``argv``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=600.0, help="K")
    parser.add_argument("--model", default="allegro-emt-metals", help="name of a zoo model")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    atoms = bulk("Cu", "fcc", a=3.75, cubic=True) * (3, 3, 3)  # 108 atoms
    atoms.numbers[::4] = 79  # Au on one of the four fcc sublattices: L1_2 Cu3Au
    atoms.calc = AllegroCalculator.from_pretrained(args.model, device=args.device)
    rng = np.random.default_rng(0)
    masses = atoms.get_masses()[:, None]
    atoms.set_momenta(
        rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * units.kB * args.temperature)
    )
    Stationary(atoms)
    dyn = Bussi(atoms, 2.0 * units.fs, temperature_K=args.temperature, taut=100 * units.fs, rng=rng)

    def report() -> None:
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        print(
            f"t = {dyn.get_time() / units.fs:7.1f} fs   T = {atoms.get_temperature():7.1f} K   "
            f"E_pot = {epot:10.4f} eV   E_tot = {epot + ekin:10.4f} eV"
        )

    dyn.attach(report, interval=max(1, args.steps // 10))
    start = time.perf_counter()
    dyn.run(args.steps)
    elapsed = time.perf_counter() - start
    print(
        f"done: {args.steps} steps of {len(atoms)} atoms in {elapsed:.1f} s "
        f"({args.steps / elapsed:.1f} steps/s) on {atoms.calc.device}; "
        f"final T = {atoms.get_temperature():.0f} K"
    )


if __name__ == "__main__":
    main()
