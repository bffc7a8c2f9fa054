"""The timed model specs (reference builder arguments) and the cell each is timed on.

Imported by both sides of ``foundation_timing.py`` (our venv and the reference venv), so it
needs only numpy and ASE. Two kinds of spec:

- foundation sizes: the builder arguments of the nequip.net ``NequIP-OAM-L`` and
  ``Allegro-OAM-L`` configs (``/work/shared/reference/foundation_models.md``); random (seeded)
  weights, the published 89 type names, per-type shifts (OMat24 isolated-atom energies) and
  scales ("MPTrj per-type forces RMS sqrt", Ne = Ar = 0); float32; timed on rattled
  (Mg,Co,Ni,Zn)O rocksalt cells.
- tutorial sizes (``TUTORIAL``), one type Cu, r_max 5, each in float32 and float64 (names end
  in ``-float32`` / ``-float64``): Allegro with l_max 2 or 1, 2 layers, 64 scalar / 32 tensor
  features and the other settings of nequip-allegro's ``configs/tutorial.yaml`` (the model of
  ``/work/shared/reference/baselines.md``); NequIP with 3 layers, l_max 1, 32 features; timed on
  rattled fcc Cu cells (a = 3.61 A, 4 n^3 atoms).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from foundation_types import SCALES89, SHIFTS89, TYPES89  # noqa: E402

_PER_TYPE = {
    "type_names": TYPES89, "model_dtype": "float32",
    "per_type_energy_shifts": SHIFTS89, "per_type_energy_shifts_trainable": False,
    "per_type_energy_scales": SCALES89, "per_type_energy_scales_trainable": True,
}  # fmt: skip
MODELS = {
    "NequIP-OAM-L": {
        "_target_": "nequip.model.FullNequIPGNNModel", "seed": 42, **_PER_TYPE, "r_max": 6.0,
        "irreps_edge_sh": "1x0e+1x1o+1x2e+1x3o", "type_embed_num_features": 48,
        "feature_irreps_hidden": ["128x0e+64x1o+32x2e+32x3o"] * 5 + ["128x0e"],
        "radial_mlp_depth": [1] * 6, "radial_mlp_width": [128] * 6,
        "num_bessels": 8, "bessel_trainable": True, "polynomial_cutoff_p": 5,
        "avg_num_neighbors": 62.012104256525795,
        "pair_potential": {"_target_": "nequip.nn.pair_potential.ZBL", "units": "metal",
                           "chemical_species": TYPES89},
    },
    "Allegro-OAM-L": {
        "_target_": "allegro.model.AllegroModel", "seed": 1, **_PER_TYPE, "r_max": 7.0,
        "l_max": 3, "parity": False, "num_layers": 4, "num_scalar_features": 256,
        "num_tensor_features": 64, "tp_path_channel_coupling": True,
        "allegro_mlp_hidden_layers_depth": 2, "allegro_mlp_hidden_layers_width": 1024,
        "readout_mlp_hidden_layers_depth": 1, "readout_mlp_hidden_layers_width": 128,
        "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed",
                                  "num_bessels": 12, "bessel_trainable": True,
                                  "polynomial_cutoff_p": 8},
        "radial_chemical_embed_dim": 512, "scalar_embed_mlp_hidden_layers_width": 512,
        "avg_num_neighbors": 9986,
    },
}  # fmt: skip

_TUTORIAL_SHARED = {
    "seed": 456, "type_names": ["Cu"], "r_max": 5.0, "avg_num_neighbors": 42.0,
    "per_type_energy_scales": 1.0, "per_type_energy_shifts": 0.0,
}  # fmt: skip
_TUTORIAL_ALLEGRO = {
    "_target_": "allegro.model.AllegroModel", **_TUTORIAL_SHARED, "parity": True,
    "num_layers": 2, "num_scalar_features": 64, "num_tensor_features": 32,
    "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed",
                              "num_bessels": 8, "bessel_trainable": False,
                              "polynomial_cutoff_p": 6},
    "radial_chemical_embed_dim": 64, "scalar_embed_mlp_hidden_layers_depth": 1,
    "scalar_embed_mlp_hidden_layers_width": 64, "allegro_mlp_hidden_layers_depth": 1,
    "allegro_mlp_hidden_layers_width": 64, "readout_mlp_hidden_layers_depth": 1,
    "readout_mlp_hidden_layers_width": 64, "tp_path_channel_coupling": True,
}  # fmt: skip
TUTORIAL = {
    "Allegro-l2": {**_TUTORIAL_ALLEGRO, "l_max": 2},
    "Allegro-l1": {**_TUTORIAL_ALLEGRO, "l_max": 1},
    "NequIP-l1": {"_target_": "nequip.model.NequIPGNNModel", **_TUTORIAL_SHARED,
                  "num_layers": 3, "l_max": 1, "parity": True, "num_features": 32},
}  # fmt: skip
MODELS.update(
    {
        f"{name}-{dtype}": {**spec, "model_dtype": dtype}
        for name, spec in TUTORIAL.items()
        for dtype in ("float32", "float64")
    }
)
FCC_CU_A = 3.61  # Angstrom
FCC_RATTLE = 0.02  # Angstrom

# rocksalt high-entropy oxide (Mg,Co,Ni,Zn)O, a = 4.22 A (0.107 atoms/A^3)
ROCKSALT_A = 4.22  # Angstrom
CATIONS = ("Mg", "Co", "Ni", "Zn")
RATTLE = 0.05  # Angstrom


def model_key(name: str) -> str:
    """Cache folder name of a model: its name and a hash of its builder arguments."""
    text = json.dumps(MODELS[name], sort_keys=True)
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def supercell_repeats(n_atoms: int) -> tuple[int, int, int]:
    """Repeats of the 8-atom conventional cell: within 10 % of ``n_atoms``, most cubic first."""
    candidates = [(a, b, c) for a in range(1, 9) for b in range(1, a + 1) for c in range(1, b + 1)]

    def rank(r: tuple[int, int, int]) -> tuple[bool, int, int]:
        miss = abs(8 * r[0] * r[1] * r[2] - n_atoms)
        return miss > 0.1 * n_atoms, r[0] - r[2], miss

    return min(candidates, key=rank)


def oxide_cell(n_atoms: int):
    """A rattled (Mg,Co,Ni,Zn)O rocksalt supercell of about ``n_atoms`` atoms (seeded)."""
    from ase.build import bulk

    atoms = bulk("MgO", "rocksalt", a=ROCKSALT_A, cubic=True) * supercell_repeats(n_atoms)
    rng = np.random.default_rng(len(atoms))
    cation = np.flatnonzero(atoms.numbers != 8)
    symbols = np.array(atoms.get_chemical_symbols(), dtype=object)
    symbols[cation] = [CATIONS[i % len(CATIONS)] for i in rng.permutation(len(cation))]
    atoms.set_chemical_symbols(list(symbols))
    atoms.positions += rng.normal(0.0, RATTLE, atoms.positions.shape)
    return atoms


def fcc_cu_cell(n_atoms: int):
    """A rattled (0.02 A, seeded) cubic fcc Cu supercell of 4 n^3 atoms, n = round((N/4)^(1/3))."""
    from ase.build import bulk

    repeat = max(1, round((n_atoms / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=FCC_CU_A, cubic=True) * repeat
    atoms.rattle(FCC_RATTLE, seed=0)
    return atoms


def cell(name: str, n_atoms: int):
    """The structure model ``name`` is timed on: fcc Cu (tutorial sizes) or the oxide."""
    return fcc_cu_cell(n_atoms) if MODELS[name]["type_names"] == ["Cu"] else oxide_cell(n_atoms)


def perturbations(n_atoms: int, calls: int) -> np.ndarray:
    """The position offsets (uniform in +-1e-3 A) of each call; the same for every calculator."""
    return np.random.default_rng(1).uniform(-1e-3, 1e-3, (calls, n_atoms, 3))


def serve(calculator, calls: int, phases=None) -> None:
    """Answer timing requests on stdin, one JSON line each on stdout (a worker's loop).

    Requests: ``load PATH`` (the cell to work on, an ASE file; replaces the previous one),
    ``energy`` (results at the unperturbed positions), ``call K`` (one
    ``get_forces()`` + ``get_stress()`` at the positions of call K: wall and thread-CPU
    seconds), ``md K`` (K more ASE ``VelocityVerlet`` steps of 1 fs, started at the
    unperturbed positions with 300 K Maxwell-Boltzmann velocities, seeded: seconds for all K),
    ``rss`` (peak resident memory of this process, MiB), ``quit``. With ``phases`` (an object
    with ``reset()`` and ``totals()``, e.g. our calculator's phase timer) the ``call`` and
    ``md`` replies carry its totals too. Anything else a library prints goes to stderr, so
    stdout carries only the answers.
    """
    import os
    import resource
    import sys
    import time

    import ase.io

    answer = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    answer.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = line.split()
        if not request or request[0] == "quit":
            break
        if request[0] == "load":
            atoms = ase.io.read(request[1])
            base = atoms.positions.copy()
            offsets = perturbations(len(atoms), calls)
            atoms.calc = calculator
            dynamics = None
            reply = {"N": len(atoms)}
        elif request[0] == "energy":
            atoms.positions = base
            reply = {
                "energy": float(atoms.get_potential_energy()),
                "forces": atoms.get_forces().tolist(),
                "stress": atoms.get_stress().tolist(),
            }
        elif request[0] in ("call", "md"):
            if request[0] == "md" and dynamics is None:
                dynamics = _velocity_verlet(atoms, base)
            elif request[0] == "call":
                atoms.positions = base + offsets[int(request[1])]
            if phases is not None:
                phases.reset()
            wall, cpu, process = time.perf_counter(), time.thread_time(), time.process_time()
            if request[0] == "md":
                dynamics.run(int(request[1]))
            else:
                atoms.get_forces()
                atoms.get_stress()
            reply = {
                "wall": time.perf_counter() - wall,
                "cpu": time.thread_time() - cpu,
                "process_cpu": time.process_time() - process,
            }
            if phases is not None:
                reply["phases"] = phases.totals()
        elif request[0] == "rss":
            reply = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        else:
            reply = {"error": f"unknown request {line.strip()!r}"}
        answer.write(json.dumps(reply) + "\n")


def _velocity_verlet(atoms, positions: np.ndarray):
    """ASE VelocityVerlet (1 fs) from ``positions`` with seeded 300 K velocities."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms.positions = positions
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    return VelocityVerlet(atoms, timestep=1.0 * units.fs)
