"""The two foundation-model architectures at their published sizes, and the timed cells.

Imported by both sides of ``foundation_timing.py`` (our venv and the reference venv), so it
needs only numpy and ASE. The builder arguments are those of the nequip.net ``NequIP-OAM-L``
and ``Allegro-OAM-L`` configs (``/work/shared/reference/foundation_models.md``); the weights
are random (seeded), the 89 type names, per-type shifts (OMat24 isolated-atom energies) and
per-type scales ("MPTrj per-type forces RMS sqrt", Ne = Ar = 0) are the published values.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

# H..Bi (Z 1-83), then Ac Th Pa U Np Pu: the type index is the position in this list
TYPES89 = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As "
    "Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd "
    "Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Ac Th Pa U Np Pu"
).split()
_SHIFTS = """
-1.11700253 0.00079886 -0.29731164 -0.04129868 -0.29106192 -1.27751531 -3.12342715 -1.54797136
-0.43969356 -0.01250908 -0.22855413 -0.00943179 -0.21707638 -0.82619133 -1.88667434 -0.89093583
-0.25816211 -0.02414768 -0.17662425 -0.02568319 -2.13001165 -2.38688845 -3.55934233 -5.44700879
-5.14749562 -3.30662847 -1.42167737 -0.63181379 -0.23449167 -0.01146636 -0.21291259 -0.77939897
-1.70148487 -0.78386705 -0.22690657 -0.02245409 -0.16092396 -0.02798717 -2.25685695 -2.23690495
-2.15347771 -4.60251809 -3.36416792 -2.23062607 -1.15550917 -1.47553527 -0.19918102 -0.01475888
-0.19767692 -0.68005773 -1.43073368 -0.65790462 -0.18915279 -0.01179476 -0.13507902 -0.03056979
-0.36017439 -0.86279246 -0.20573327 -0.2734463 -0.20046965 -0.25444338 -8.37972664 -9.58424928
-0.19466184 -0.24860115 -0.19531288 -0.15401392 -0.14577898 -0.19655747 -0.15645898 -3.49380556
-3.5317097 -4.57108006 -4.63425205 -2.88247063 -1.45679675 -0.50290184 -0.18521704 -0.01123956
-0.17483649 -0.63132037 -1.3248562 -0.24135757 -1.04601971 -2.04574044 -3.84544799 -7.28626119
-7.3136314
"""
_SCALES = """
1.2479 0.0284 0.2406 0.4126 0.7826 1.599 1.5753 0.8498 0.6083 0.0 0.1963 0.1935 0.4294 0.7386
1.2352 0.6816 0.4024 0.0 0.4444 0.3384 0.3674 0.5421 0.8662 0.6028 0.3634 0.3259 0.373 0.2487
0.2266 0.2833 0.6435 0.3619 0.6616 1.0083 0.3287 0.2407 0.331 0.265 0.2448 0.8569 0.8551 0.9837
0.6988 0.8013 0.3093 0.2268 0.4571 0.3263 0.3278 0.3482 0.5747 0.6634 0.4617 0.7796 0.1202
0.2242 0.341 0.2357 0.4187 0.2967 0.2979 0.3289 0.1654 0.1971 0.2603 0.3336 0.2375 0.2785 0.3185
0.4831 0.2021 0.5809 0.6663 0.8977 0.6913 0.8224 0.3624 0.3336 0.1913 0.1713 0.6944 0.1735
0.4392 0.0976 0.345 0.0914 0.5779 0.271 0.3288
"""
SHIFTS89 = dict(zip(TYPES89, map(float, _SHIFTS.split()), strict=True))
SCALES89 = dict(zip(TYPES89, map(float, _SCALES.split()), strict=True))

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


def perturbations(n_atoms: int, calls: int) -> np.ndarray:
    """The position offsets (uniform in +-1e-3 A) of each call; the same for every calculator."""
    return np.random.default_rng(1).uniform(-1e-3, 1e-3, (calls, n_atoms, 3))


def serve(calculator, atoms, calls: int) -> None:
    """Answer timing requests on stdin, one JSON line each on stdout (a worker's loop).

    Requests: ``energy`` (results at the unperturbed positions), ``call K`` (one
    ``get_forces()`` + ``get_stress()`` at the positions of call K: wall and thread-CPU
    seconds), ``rss`` (peak resident memory of this process, MiB), ``quit``. Anything else a
    library prints goes to stderr, so stdout carries only the answers.
    """
    import os
    import resource
    import sys
    import time

    answer = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    base = atoms.positions.copy()
    offsets = perturbations(len(atoms), calls)
    atoms.calc = calculator
    answer.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = line.split()
        if not request or request[0] == "quit":
            break
        if request[0] == "energy":
            atoms.positions = base
            reply = {
                "energy": float(atoms.get_potential_energy()),
                "forces": atoms.get_forces().tolist(),
                "stress": atoms.get_stress().tolist(),
            }
        elif request[0] == "call":
            atoms.positions = base + offsets[int(request[1])]
            wall, cpu, process = time.perf_counter(), time.thread_time(), time.process_time()
            atoms.get_forces()
            atoms.get_stress()
            reply = {
                "wall": time.perf_counter() - wall,
                "cpu": time.thread_time() - cpu,
                "process_cpu": time.process_time() - process,
            }
        elif request[0] == "rss":
            reply = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        else:
            reply = {"error": f"unknown request {line.strip()!r}"}
        answer.write(json.dumps(reply) + "\n")
