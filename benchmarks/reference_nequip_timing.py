"""Reference baseline: time the upstream nequip/allegro ASE calculator on CPU.

This script is the *reference* timing baseline. It imports the upstream
``nequip`` (0.19.x) and ``nequip-allegro`` (0.8.x) packages and must be run
ONLY with the separate reference venv, e.g.::

    /work/refvenv/bin/python benchmarks/reference_nequip_timing.py \\
        --sizes 108 500 --dtypes float32 float64 --repeats 5 --threads 1 \\
        --json reference_timing.json

It builds an untrained (random-weight, seed 456) Allegro model in-process,
wraps it in ``nequip.integrations.ase.NequIPCalculator`` (matscipy neighbor
list), and times ``atoms.get_forces()`` on rattled fcc Cu supercells. Before
every call the positions are perturbed by ~1e-3 Angstrom so nothing is cached;
the timed call therefore includes neighbor-list construction, the forward pass
and the autograd force evaluation. 2 warm-up calls precede ``--repeats`` timed
calls; min and median wall time per call are reported.
"""

import argparse
import json
import platform
import statistics
import sys
import time
from importlib import metadata as importlib_metadata

import numpy as np

try:
    import allegro  # noqa: F401
    import nequip  # noqa: F401
    import torch
except ImportError as exc:  # pragma: no cover
    sys.exit(f"{exc}\nThis script needs the reference venv: run it with /work/refvenv/bin/python")

from allegro.model import AllegroModel
from ase.build import bulk
from nequip.data import AtomicDataDict
from nequip.integrations.ase import NequIPCalculator
from nequip.integrations.utils import basic_transforms
from nequip.utils.global_state import set_global_state

LATTICE_A = 3.61  # fcc Cu, Angstrom
RATTLE_STDEV = 0.02  # Angstrom
PERTURB = 1e-3  # Angstrom, per-call position perturbation
WARMUP = 2
SIZE_TO_REPS = {4 * n**3: n for n in range(1, 21)}  # atoms -> cubic-cell repeats


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[108, 500],
        help="atom counts; must be 4*n^3 (fcc cubic supercell)",
    )
    p.add_argument(
        "--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"]
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write results to this JSON file")
    p.add_argument("--r-max", type=float, default=5.0)
    p.add_argument("--l-max", type=int, default=2)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--num-scalar-features", type=int, default=64)
    p.add_argument("--num-tensor-features", type=int, default=16)
    p.add_argument("--avg-num-neighbors", type=float, default=42.0)
    p.add_argument("--type-names", nargs="+", default=["Cu"])
    return p.parse_args(argv)


def package_versions():
    out = {"python": platform.python_version()}
    for dist in ("torch", "nequip", "nequip-allegro", "e3nn", "ase", "matscipy", "vesin", "numpy"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = None
    return out


def build_model(args, model_dtype):
    w = args.num_scalar_features
    model = AllegroModel(
        seed=456,
        model_dtype=model_dtype,
        type_names=list(args.type_names),
        r_max=args.r_max,
        l_max=args.l_max,
        parity=True,
        num_layers=args.num_layers,
        num_scalar_features=w,
        num_tensor_features=args.num_tensor_features,
        radial_chemical_embed={
            "_target_": "allegro.nn.TwoBodyBesselScalarEmbed",
            "num_bessels": 8,
            "bessel_trainable": False,
            "polynomial_cutoff_p": 6,
        },
        radial_chemical_embed_dim=w,
        scalar_embed_mlp_hidden_layers_depth=1,
        scalar_embed_mlp_hidden_layers_width=w,
        scalar_embed_mlp_nonlinearity="silu",
        allegro_mlp_hidden_layers_depth=1,
        allegro_mlp_hidden_layers_width=w,
        allegro_mlp_nonlinearity="silu",
        readout_mlp_hidden_layers_depth=1,
        readout_mlp_hidden_layers_width=32,
        readout_mlp_nonlinearity="silu",
        tp_path_channel_coupling=True,
        avg_num_neighbors=args.avg_num_neighbors,
        per_type_energy_scales=1.0,
        per_type_energy_shifts=0.0,
    )
    model.eval()
    return model


def build_calculator(model, args):
    type_names = list(args.type_names)
    transforms = basic_transforms(
        model.metadata,
        args.r_max,
        type_names,
        {s: s for s in type_names},
        neighborlist_backend="matscipy",
    )
    return NequIPCalculator(model, device="cpu", transforms=transforms)


def make_atoms(n_atoms):
    if n_atoms not in SIZE_TO_REPS:
        raise SystemExit(f"size {n_atoms} is not 4*n^3 (fcc cubic supercell)")
    reps = SIZE_TO_REPS[n_atoms]
    atoms = bulk("Cu", "fcc", a=LATTICE_A, cubic=True).repeat((reps, reps, reps))
    np.random.seed(0)
    atoms.positions += np.random.normal(0.0, RATTLE_STDEV, atoms.positions.shape)
    return atoms


def time_forces(calc, atoms, repeats):
    atoms = atoms.copy()
    atoms.calc = calc
    base = atoms.get_positions().copy()
    rng = np.random.default_rng(1)
    times = []
    for i in range(WARMUP + repeats):
        # fresh ~1e-3 A perturbation of the base geometry -> ASE cache invalidated
        atoms.set_positions(base + rng.uniform(-PERTURB, PERTURB, base.shape))
        t0 = time.perf_counter()
        forces = atoms.get_forces()
        dt = time.perf_counter() - t0
        assert np.all(np.isfinite(forces))
        if i >= WARMUP:
            times.append(dt)
    edges = int(calc.atoms_to_data(atoms)[AtomicDataDict.EDGE_INDEX_KEY].shape[1])
    return times, edges


def main(argv=None):
    args = parse_args(argv)
    set_global_state()
    torch.set_num_threads(args.threads)
    versions = package_versions()
    print(f"versions: {versions}")
    print(f"threads: {torch.get_num_threads()}  repeats: {args.repeats}  warmup: {WARMUP}")

    results = []
    for dtype in args.dtypes:
        model = build_model(args, dtype)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"[{dtype}] Allegro parameter count: {n_params}")
        calc = build_calculator(model, args)
        for n_atoms in args.sizes:
            atoms = make_atoms(n_atoms)
            times, edges = time_forces(calc, atoms, args.repeats)
            t_min, t_med = min(times), statistics.median(times)
            rec = {
                "n_atoms": n_atoms,
                "dtype": dtype,
                "edges": edges,
                "min_ms": 1e3 * t_min,
                "median_ms": 1e3 * t_med,
                "atom_steps_per_s": n_atoms / t_med,
                "times_ms": [1e3 * t for t in times],
                "repeats": args.repeats,
                "threads": args.threads,
                "n_params": n_params,
                "hyperparameters": {
                    "r_max": args.r_max,
                    "l_max": args.l_max,
                    "num_layers": args.num_layers,
                    "num_scalar_features": args.num_scalar_features,
                    "num_tensor_features": args.num_tensor_features,
                    "avg_num_neighbors": args.avg_num_neighbors,
                    "type_names": list(args.type_names),
                },
                "versions": versions,
            }
            results.append(rec)
            print(f"  N={n_atoms} {dtype}: median {rec['median_ms']:.1f} ms", flush=True)

    print()
    print("| N | dtype | edges | min ms | median ms | atom-steps/s |")
    print("|---:|:---|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['n_atoms']} | {r['dtype']} | {r['edges']} | {r['min_ms']:.1f} "
            f"| {r['median_ms']:.1f} | {r['atom_steps_per_s']:.0f} |"
        )

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {args.json}")
    return results


if __name__ == "__main__":
    main()
