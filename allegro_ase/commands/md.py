"""``allegro-ase md MODEL STRUCTURE``: molecular dynamics with ASE's integrators.

- ``nve``: ``ase.md.verlet.VelocityVerlet``;
- ``langevin``: ``ase.md.langevin.Langevin``, friction 1/``--tdamp``, the centre of mass fixed
  by ``FixCom`` when the structure has no constraints of its own;
- ``bussi``: ``ase.md.bussi.Bussi`` (stochastic velocity rescaling), ``taut = --tdamp``;
- ``nose-hoover``: ``ase.md.nose_hoover_chain.NoseHooverChainNVT``, ``tdamp = --tdamp``;
- ``npt``: ``ase.md.nose_hoover_chain.IsotropicMTKNPT`` (the volume fluctuates), or ``MTKNPT``
  with ``--anisotropic`` (the whole cell); ``tdamp``, ``pdamp``, ``--pressure`` in GPa.

Random numbers (velocities, Langevin and Bussi noise) come from one
``numpy.random.default_rng(--seed)``; the global RNG is not touched.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from .common import (
    CommandError,
    add_model_flags,
    load_calculator,
    non_negative_int,
    positive_float,
    positive_int,
    progress_bar,
    read_structure,
)

logger = logging.getLogger("allegro_ase.cli")
ENSEMBLES = ("nve", "langevin", "bussi", "nose-hoover", "npt")


def add_md(commands: argparse._SubParsersAction) -> None:
    """Add ``md MODEL STRUCTURE`` to the subcommands."""
    parser = commands.add_parser(
        "md",
        help="molecular dynamics: NVE, NVT (Langevin, Bussi, Nose-Hoover) or NPT (MTK)",
        description="Run molecular dynamics of STRUCTURE. Velocities are drawn from the "
        "Maxwell-Boltzmann distribution at --temperature (centre of mass at rest) unless the "
        "file holds momenta.",
    )
    add_model_flags(parser)
    parser.add_argument("structure", metavar="STRUCTURE", help="any file ASE reads (last frame)")
    group = parser.add_argument_group("dynamics")
    group.add_argument("--ensemble", choices=ENSEMBLES, default="nve", help="default: nve")
    group.add_argument(
        "--temperature",
        type=float,
        default=300.0,
        help="K: thermostat target and initial velocities (default: 300)",
    )
    group.add_argument(
        "--pressure", type=float, default=0.0, help="GPa, for --ensemble npt (default: 0)"
    )
    group.add_argument("--timestep", type=positive_float, default=1.0, help="fs (default: 1)")
    group.add_argument("--steps", type=non_negative_int, default=1000, help="default: 1000")
    group.add_argument(
        "--tdamp", type=positive_float, default=100.0, help="thermostat time, fs (default: 100)"
    )
    group.add_argument(
        "--pdamp", type=positive_float, default=1000.0, help="barostat time, fs (default: 1000)"
    )
    group.add_argument(
        "--anisotropic",
        action="store_true",
        help="npt: every cell component fluctuates (MTKNPT), not only the volume",
    )
    group.add_argument(
        "--seed", type=int, default=0, help="of the velocities and thermostat noise (default: 0)"
    )
    files = parser.add_argument_group("files")
    files.add_argument("--traj", help="trajectory (.traj, .extxyz, ...), written every --interval")
    files.add_argument("--log", help="ASE MD log (time, energies, temperature), every --interval")
    files.add_argument(
        "--interval", type=positive_int, default=10, help="steps between writes (default: 10)"
    )
    parser.set_defaults(run=md_command)


def md_command(args: argparse.Namespace) -> int:
    """Run the dynamics of ``args`` and print a one-line summary."""
    import contextlib

    import numpy as np

    if args.temperature < 0:
        raise CommandError(f"--temperature must be 0 K or more, got {args.temperature:g}.")
    atoms = read_structure(args.structure)
    if args.ensemble == "npt" and not (atoms.pbc.all() and abs(atoms.cell.volume) > 0):
        raise CommandError(
            f"--ensemble npt needs a cell periodic in all three directions; {args.structure} "
            f"has pbc {atoms.pbc.tolist()} and volume {abs(atoms.cell.volume):g} Å³."
        )
    atoms.calc = load_calculator(args)
    rng = np.random.default_rng(args.seed)
    initial_velocities(atoms, args.temperature, rng)
    dyn = integrator(atoms, args, rng)
    start = time.perf_counter()
    with contextlib.ExitStack() as files:
        if args.log:
            from ase.md import MDLogger

            logfile = files.enter_context(open(args.log, "w"))
            logger_ = MDLogger(dyn, atoms, logfile, stress=bool(atoms.pbc.any()))
            dyn.attach(logger_, interval=args.interval)
        if args.traj:
            dyn.attach(trajectory_writer(atoms, args.traj, files), interval=args.interval)
        bar = files.enter_context(progress_bar(args.steps, f"md {args.ensemble}", args.quiet))
        dyn.attach(lambda: bar.update(dyn.nsteps - bar.n), interval=1)
        dyn.run(args.steps)
    elapsed = time.perf_counter() - start
    epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
    print(
        f"{args.steps} steps ({args.steps * args.timestep / 1000:g} ps) of {len(atoms)} atoms, "
        f"{args.ensemble}, in {elapsed:.1f} s ({args.steps / max(elapsed, 1e-9):.1f} steps/s); "
        f"final T = {atoms.get_temperature():.1f} K, E_pot = {epot:.4f} eV, "
        f"E_tot = {epot + ekin:.4f} eV"
        + (f", volume = {atoms.get_volume():.2f} Å³" if args.ensemble == "npt" else "")
    )
    if args.traj:
        logger.info("trajectory: %s (every %d steps, step 0 included)", args.traj, args.interval)
    return 0


def initial_velocities(atoms, temperature: float, rng) -> None:
    """Draw Maxwell-Boltzmann momenta at ``temperature`` (K) unless ``atoms`` already has some."""
    from ase.md import velocitydistribution

    if atoms.get_momenta().any():
        logger.info("using the momenta of the structure file (T = %.1f K)", atoms.get_temperature())
        return
    # ASE 3.29 renamed MaxwellBoltzmannDistribution to thermalize_momenta
    draw = getattr(velocitydistribution, "thermalize_momenta", None)
    draw = draw or velocitydistribution.MaxwellBoltzmannDistribution
    draw(atoms, temperature_K=temperature, rng=rng)
    velocitydistribution.Stationary(atoms)


def integrator(atoms, args: argparse.Namespace, rng):
    """Return the ASE dynamics object for ``args.ensemble`` (see the module's table)."""
    from ase import units

    dt, tdamp = args.timestep * units.fs, args.tdamp * units.fs
    temperature = args.temperature
    if args.ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, dt)
    if args.ensemble == "langevin":
        from ase.md.langevin import Langevin

        if not atoms.constraints:  # ASE's advice: FixCom rather than Langevin's fixcm
            from ase.constraints import FixCom

            atoms.set_constraint(FixCom())
        return Langevin(
            atoms, dt, temperature_K=temperature, friction=1 / tdamp, fixcm=False, rng=rng
        )
    if args.ensemble == "bussi":
        from ase.md.bussi import Bussi

        return Bussi(atoms, dt, temperature_K=temperature, taut=tdamp, rng=rng)
    if args.ensemble == "nose-hoover":
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, dt, temperature_K=temperature, tdamp=tdamp)
    from ase.md.nose_hoover_chain import MTKNPT, IsotropicMTKNPT

    npt = MTKNPT if args.anisotropic else IsotropicMTKNPT
    return npt(
        atoms,
        dt,
        temperature_K=temperature,
        pressure_au=args.pressure * units.GPa,
        tdamp=tdamp,
        pdamp=args.pdamp * units.fs,
    )


def trajectory_writer(atoms, path: str, files):
    """Return a function that appends ``atoms`` (with its results) to ``path``.

    ``.traj`` files are ASE trajectories (closed by the ``files`` exit stack); any other name is
    written frame by frame with ``ase.io.write(..., append=True)`` in the format of its suffix.
    """
    if Path(path).suffix == ".traj":
        from ase.io import Trajectory

        return files.enter_context(Trajectory(path, "w", atoms))
    from ase.io import write

    Path(path).unlink(missing_ok=True)

    def append() -> None:
        write(path, atoms, append=True)

    return append
