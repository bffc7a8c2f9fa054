"""Batched NVT molecular dynamics of three different crystals with torch-sim, in one model call per step.

fcc Cu (108 atoms), an L1_2 Cu3Au cell (4 atoms, smaller than the cutoff) and a sheared
Al-Ag cell (8 atoms) run side by side under a Langevin thermostat at 600 K with the shipped
``allegro-emt-metals`` model: torch-sim keeps them in one ``SimState`` and
:class:`~allegro_ase.torch_sim.AllegroTorchSimModel` evaluates all of them at once::

    pip install 'allegro-ase[torch-sim]'
    python examples/torch_sim_batched_md.py --steps 200
"""

from __future__ import annotations

import argparse
import time

import torch
import torch_sim as ts
from ase import units
from ase.build import bulk

from allegro_ase.torch_sim import AllegroTorchSimModel


def systems() -> list:
    """Build the three crystals as ASE Atoms."""
    cu = bulk("Cu", "fcc", a=3.61, cubic=True) * 3
    cu3au = bulk("Cu", "fcc", a=3.75, cubic=True)
    cu3au.numbers[0] = 79
    alag = bulk("Al", "fcc", a=4.08) * (2, 2, 2)
    alag.numbers[1::2] = 47
    alag.set_cell(alag.cell.array @ [[1.0, 0.04, 0.0], [0.0, 1.0, 0.05], [0.0, 0.0, 1.0]])
    return [cu, cu3au, alag]


def langevin():
    """torch-sim's Langevin NVT integrator, in its API before and after version 0.4."""
    return ts.Integrator.nvt_langevin if hasattr(ts, "Integrator") else ts.nvt_langevin


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    """Run the MD of the command line ``argv``; return each system's final T (K) and E_pot (eV)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=600.0, help="K")
    parser.add_argument("--timestep", type=float, default=2.0, help="fs")
    parser.add_argument("--model", default="allegro-emt-metals", help="name of a zoo model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0, help="of the thermostat's noise")
    args = parser.parse_args(argv)

    model = AllegroTorchSimModel.from_pretrained(args.model, device=args.device)
    crystals = systems()
    devices = [model.device] if model.device.type == "cuda" else []
    start = time.perf_counter()
    with torch.random.fork_rng(devices):  # torch-sim draws from torch's global RNG: seed a copy
        torch.manual_seed(args.seed)
        state = ts.integrate(
            system=crystals,
            model=model,
            integrator=langevin(),
            n_steps=args.steps,
            temperature=args.temperature,
            timestep=args.timestep / 1000.0,  # torch-sim's metal units: ps
        )
    elapsed = time.perf_counter() - start

    n_atoms = torch.bincount(state.system_idx).to(torch.float64)
    kinetic = 0.5 * (state.momenta**2).sum(1) / state.masses  # eV
    kinetic = torch.zeros_like(n_atoms).index_add(0, state.system_idx, kinetic)
    temperature = (2 * kinetic / (3 * n_atoms * units.kB)).tolist()
    potential = state.energy.tolist()
    for atoms, t, e in zip(crystals, temperature, potential, strict=True):
        print(
            f"{atoms.get_chemical_formula():>8}: {len(atoms):4d} atoms   T = {t:7.1f} K   "
            f"E_pot = {e / len(atoms):8.4f} eV/atom"
        )
    total = int(n_atoms.sum())
    print(
        f"done: {args.steps} steps of {len(crystals)} systems ({total} atoms) in one batch in "
        f"{elapsed:.1f} s ({args.steps * total / elapsed:.0f} atom-steps/s) on {model.device}"
    )
    return {"temperature": temperature, "potential_energy": potential}


if __name__ == "__main__":
    main()
