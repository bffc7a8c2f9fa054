"""Write tests/data/foundation/: small look-alikes of the nequip.net foundation models.

The published NequIP-OAM-L / Allegro-OAM-L files cannot be fetched here, so this tool
trains tiny models with the same builders, module tree and options (89 chemical-symbol type
names H..Bi + Ac..Pu, explicit per-type shift and trainable scale dicts with Ne = Ar = 0,
scalar avg_num_neighbors, trainable Bessels, ZBL, ``nequip.model.modify`` wrapper,
fine-tuning wrappers) with the reference framework, then evaluates every file with the
reference calculator of the venv that wrote it. See tests/data/README.md ("foundation/").

Run with the interpreter of the reference venv (nequip 0.19.1 + nequip-allegro 0.8.3)::

    OMP_NUM_THREADS=1 /work/refvenv/bin/python tools/make_foundation_fixtures.py

which builds the 0.19.1 cases, then runs itself under ``--old-python`` (default
/work/refvenv-old/bin/python: nequip 0.13.0 + nequip-allegro 0.7.1) with ``--old`` for the
old-version cases, then merges every case's outputs into ``reference_outputs.pt`` and writes
``inventory.json`` (pickled classes, state-dict keys and shapes, configs). Steps can be run
alone: ``--cases NAME ...``, ``--old``, ``--merge``. Intermediate outputs go to ``--build``.

``--full-size DIR`` instead builds random-weight (untrained, EMA = raw) FULL-SIZE look-alikes
of NequIP-OAM-L and Allegro-OAM-L (the published hyperparameters) as ``.ckpt`` (written with a
0-step ``nequip-train`` run, i.e. a real Lightning checkpoint) and ``.nequip.zip`` into DIR,
with reference outputs on one 24-atom multi-element cell in ``DIR/reference_outputs.pt``.
These are ~40-80 MB each and are not committed.

Every output file loads with ``torch.load(weights_only=True)``.
"""

import argparse
import json
import pickletools
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from reference_runs import deflate, run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "foundation"
BIN = Path(sys.executable).parent
DEFAULT_BUILD = Path(tempfile.gettempdir()) / "allegro_ase_foundation_build"
OLD_PYTHON = "/work/refvenv-old/bin/python"

from foundation_types import SCALES89, SHIFTS89, TYPES89  # noqa: E402

METALS = ["Cu", "Au", "Al", "Ag", "Ni", "Pd", "Pt"]  # EMT supports these
SPLINE_TYPES = ["Cu", "Au", "Al", "Ag"]
ZBL89 = {"_target_": "nequip.nn.pair_potential.ZBL", "units": "metal",
         "chemical_species": TYPES89}  # fmt: skip

# ---------------------------------------------------------------------------- model configs
NEQUIP_OAM_LIKE = {
    "_target_": "nequip.model.FullNequIPGNNModel", "seed": 42, "model_dtype": "float32",
    "type_names": TYPES89, "r_max": 6.0,
    "irreps_edge_sh": "1x0e+1x1o+1x2e+1x3o",
    "type_embed_num_features": 6,  # differs from the l=0 multiplicity, as 48 vs 128 in OAM-L
    "feature_irreps_hidden": ["8x0e+4x1o+2x2e+2x3o", "6x0e+3x1o+2x2e+1x3o", "8x0e"],
    "radial_mlp_depth": [1, 2, 1], "radial_mlp_width": [8, 12, 8],
    "num_bessels": 8, "bessel_trainable": True, "polynomial_cutoff_p": 5,
    "per_type_energy_shifts": SHIFTS89, "per_type_energy_shifts_trainable": False,
    "per_type_energy_scales": SCALES89, "per_type_energy_scales_trainable": True,
    "avg_num_neighbors": 62.012104256525795,
    "pair_potential": ZBL89,
}  # fmt: skip
ALLEGRO_OAM_LIKE = {
    "_target_": "allegro.model.allegro_models.AllegroModel", "seed": 1, "model_dtype": "float32",
    "type_names": TYPES89, "r_max": 7.0, "num_layers": 2, "l_max": 3, "parity": False,
    "num_scalar_features": 8, "num_tensor_features": 4, "tp_path_channel_coupling": True,
    "allegro_mlp_hidden_layers_depth": 2, "allegro_mlp_hidden_layers_width": 16,
    "readout_mlp_hidden_layers_depth": 1, "readout_mlp_hidden_layers_width": 8,
    "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed",
                              "num_bessels": 12, "bessel_trainable": True,
                              "polynomial_cutoff_p": 8},
    "radial_chemical_embed_dim": 16, "scalar_embed_mlp_hidden_layers_width": 16,
    "per_type_energy_shifts": SHIFTS89, "per_type_energy_shifts_trainable": False,
    "per_type_energy_scales": SCALES89, "per_type_energy_scales_trainable": True,
    "avg_num_neighbors": 9986,  # an int, like the real config's num_neighbours_mean_squared
}  # fmt: skip
ALLEGRO_SPLINE = {
    "_target_": "allegro.model.AllegroModel", "seed": 5, "model_dtype": "float64",
    "type_names": SPLINE_TYPES, "r_max": 5.0, "num_layers": 2, "l_max": 2, "parity": True,
    "num_scalar_features": 8, "num_tensor_features": 4, "tp_path_channel_coupling": True,
    "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodySplineScalarEmbed",
                              "num_splines": 8, "spline_span": 6},
    "radial_chemical_embed_dim": 8, "scalar_embed_mlp_hidden_layers_width": 8,
    "allegro_mlp_hidden_layers_width": 8, "readout_mlp_hidden_layers_width": 8,
    "per_type_energy_shifts": {t: SHIFTS89[t] for t in SPLINE_TYPES},
    "per_type_energy_scales": {t: SCALES89[t] for t in SPLINE_TYPES},
    "per_type_energy_scales_trainable": True,
    "avg_num_neighbors": 30.0,
}  # fmt: skip
# fine-tuning shifts (new "isolated-atom energies" of the metals only, as the docs recommend)
FINETUNE_SHIFTS = {"Cu": -3.51, "Au": -3.09, "Al": -3.34, "Ag": -2.83, "Ni": -4.45,
                   "Pd": -3.89, "Pt": -5.47}  # fmt: skip


def wrap(model, modifiers=()):
    return {"_target_": "nequip.model.modify", "modifiers": list(modifiers), "model": model}


def finetune_modifiers():
    # verbatim the layout of the nequip docs' fine-tuning example
    return [{"modifier": "modify_PerTypeScaleShift", "shifts": FINETUNE_SHIFTS,
             "shifts_trainable": False, "scales_trainable": False}]  # fmt: skip


# name -> (model config, training types, venv); configs may depend on earlier outputs
def new_cases():
    oam = NEQUIP_OAM_LIKE
    return {
        "nequip-oam-like": (wrap({**oam, "compile_mode": "compile"}), METALS),
        "nequip-oam-like-f64": ({**oam, "seed": 43, "model_dtype": "float64"}, METALS),
        "allegro-oam-like": (wrap({**ALLEGRO_OAM_LIKE, "compile_mode": "compile"}), METALS),
        "allegro-oam-like-f64": (
            {**ALLEGRO_OAM_LIKE, "_target_": "allegro.model.AllegroModel", "seed": 2,
             "model_dtype": "float64", "pair_potential": ZBL89}, METALS),
        "allegro-spline": (ALLEGRO_SPLINE, SPLINE_TYPES),
        "nequip-finetuned": (
            wrap({"_target_": "nequip.model.ModelFromPackage",
                  "package_path": str(OUT / "nequip-oam-like.nequip.zip")},
                 finetune_modifiers()), METALS),
        "nequip-finetuned-from-ckpt": (
            wrap({"_target_": "nequip.model.ModelFromCheckpoint",
                  "checkpoint_path": str(OUT / "nequip-oam-like.ckpt")},
                 finetune_modifiers()), METALS),
    }  # fmt: skip


def old_cases():
    # nequip 0.13.0 / allegro 0.7.1: same option names; ZBL there uses the model's own
    # edge cutoff (polynomial p of the radial basis), not a PolynomialCutoff(6) of its own
    return {
        "nequip-old": (
            wrap({**NEQUIP_OAM_LIKE, "seed": 44, "model_dtype": "float64"}), METALS),
        "allegro-old": (
            wrap({**ALLEGRO_OAM_LIKE, "seed": 3, "model_dtype": "float64",
                  "avg_num_neighbors": 99.93090820014581, "pair_potential": ZBL89}), METALS),
    }  # fmt: skip


FULL_SIZE = {
    "NequIP-OAM-L-like": {
        **NEQUIP_OAM_LIKE, "type_embed_num_features": 48,
        "feature_irreps_hidden": ["128x0e+64x1o+32x2e+32x3o"] * 5 + ["128x0e"],
        "radial_mlp_depth": [1] * 6, "radial_mlp_width": [128] * 6,
    },
    "Allegro-OAM-L-like": {
        **ALLEGRO_OAM_LIKE, "num_layers": 4, "num_scalar_features": 256,
        "num_tensor_features": 64, "allegro_mlp_hidden_layers_depth": 2,
        "allegro_mlp_hidden_layers_width": 1024, "readout_mlp_hidden_layers_depth": 1,
        "readout_mlp_hidden_layers_width": 128, "radial_chemical_embed_dim": 512,
        "scalar_embed_mlp_hidden_layers_width": 512,
    },
}  # fmt: skip


# ------------------------------------------------------------------------------ structures
def structures(species):
    """The evaluation structures, using only elements in ``species`` (metals first)."""
    from ase import Atoms
    from ase.build import bulk, fcc111

    metals = [s for s in METALS if s in species]
    m = (metals * 4)[:4]
    alloy = bulk("Cu", "fcc", a=3.85, cubic=True) * (2, 2, 1)  # 16 atoms
    alloy.symbols = [metals[i % len(metals)] for i in range(len(alloy))]
    alloy.rattle(0.1, seed=1)
    triclinic = Atoms(f"{m[0]}{m[1]}{m[2]}", pbc=True,
                      scaled_positions=[[0, 0, 0], [0.5, 0.4, 0.6], [0.2, 0.8, 0.3]],
                      cell=[[3.9, 0.0, 0.0], [1.1, 3.6, 0.0], [0.7, -0.9, 4.2]])  # fmt: skip
    slab = fcc111("Cu", size=(2, 2, 3), a=3.9, vacuum=5.0)
    slab.symbols = [m[i % 3] for i in range(len(slab))]
    slab.rattle(0.05, seed=3)
    if "C" in species:  # a methanol-like molecule with an argon atom (zero per-type scale)
        molecule = Atoms("COH4Ar", positions=[
            [0.0, 0.0, 0.0], [1.42, 0.0, 0.0], [-0.36, 1.03, 0.0], [-0.36, -0.51, 0.89],
            [-0.36, -0.51, -0.89], [1.74, 0.92, 0.1], [3.6, 0.4, 1.9]])  # fmt: skip
    else:  # a metal cluster
        rng = np.random.default_rng(0)
        molecule = Atoms(
            f"{m[0]}3{m[1]}2", positions=rng.random((5, 3)) * 2.5 + np.arange(5)[:, None] * 0.9
        )
    # two atoms 0.8 A apart and one 1.2 A from the first, in a cell shorter than r_max
    close = Atoms(f"{m[0]}{m[1]}{m[2]}{m[3]}{m[0]}", pbc=True, cell=[5.2, 5.4, 5.6],
                  positions=[[1.0, 1.0, 1.0], [1.8, 1.0, 1.0], [1.0, 2.2, 1.0],
                             [3.5, 3.2, 3.0], [2.4, 1.1, 3.7]])  # fmt: skip
    isolated = Atoms(m[1], positions=[[0.3, -0.2, 0.5]])
    return {"alloy": alloy, "triclinic": triclinic, "slab": slab, "molecule": molecule,
            "close_contact": close, "isolated_atom": isolated}  # fmt: skip


def full_size_cell():
    """A rattled 24-atom fcc cell with six metals."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.9, cubic=True) * (3, 2, 1)
    atoms.symbols = [METALS[(5 * i) % 6] for i in range(len(atoms))]
    atoms.rattle(0.1, seed=11)
    return atoms


def training_frames(path, species, n=6):
    """Rattled 8-atom fcc cells with random species, labelled by EMT."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    rng = np.random.default_rng(7)
    frames = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.9, cubic=True) * (2, 1, 1)
        atoms.symbols = list(rng.choice(species, len(atoms)))
        atoms.set_cell(atoms.cell * (1 + 0.02 * (k % 3 - 1)), scale_atoms=True)
        atoms.rattle(0.12, seed=k)
        atoms.calc = EMT()
        results = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                       stress=atoms.get_stress())  # fmt: skip
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    write(path, frames, format="extxyz")


# -------------------------------------------------------------------------------- training
def nequip_version():
    import nequip

    return nequip.__version__


def training_config(
    model, species, data_file, out_dir, r_max, train=4, epochs=1, lr=0.02, batches=None
):
    old = nequip_version().startswith("0.13")
    type_names = inner_type_names(model)
    if old:
        mapper = {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                  "chemical_symbols": type_names}  # fmt: skip
    else:
        mapper = {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                  "model_type_names": type_names,
                  "chemical_species_to_atom_type_map": {t: t for t in type_names}}  # fmt: skip
    transforms = [{"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": r_max},
                  mapper]  # fmt: skip
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": 1}
    metrics = {"_target_": "nequip.train.EnergyForceStressMetrics",
               "coeffs": {"total_energy_mae": 1.0, "forces_mae": 1.0, "stress_mae": 1.0}}  # fmt: skip
    return {
        "run": ["train"],
        "data": {
            "_target_": "nequip.data.datamodule.NequIPDataModule", "seed": 3,
            "split_dataset": {"dataset": {"_target_": "nequip.data.dataset.ASEDataset",
                                          "file_path": str(data_file), "transforms": transforms},
                              "train": train, "val": 2},
            "train_dataloader": loader, "val_dataloader": loader,
        },
        "trainer": {
            "_target_": "lightning.Trainer", "max_epochs": epochs, "logger": False,
            **({"limit_train_batches": batches, "limit_val_batches": batches} if batches else {}),
            "enable_progress_bar": False, "num_sanity_val_steps": 0,
            "callbacks": [{"_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "dirpath": str(out_dir), "save_last": True}],
        },
        "training_module": {
            "_target_": "nequip.train.EMALightningModule", "ema_decay": 0.9,
            "loss": {"_target_": "nequip.train.EnergyForceStressLoss", "per_atom_energy": True,
                     "coeffs": {"total_energy": 1.0, "forces": 1.0, "stress": 1.0}},
            "val_metrics": metrics,
            "optimizer": {"_target_": "torch.optim.AdamW", "lr": lr,
                          "weight_decay": 1e-8 if lr else 0.0},
            "model": model,
        },
        # as the real configs (nequip 0.13 refuses it for float64 models)
        "global_options": {"allow_tf32": model_dtype(model) in (None, "float32")},
    }  # fmt: skip


def inner_type_names(model):
    while "model" in model:
        model = model["model"]
    return model.get("type_names", TYPES89)


def inner_r_max(model):
    while "model" in model:
        model = model["model"]
    return model.get("r_max", 6.0)


def train_and_package(
    name, model, species, out_dir, tmp, deflated=True, data_dir=None, **train_options
):
    import yaml

    # the data file must outlive the run: nequip-package build reads example data from it
    data = (data_dir or tmp) / f"frames-{'-'.join(species)}.xyz"
    if not data.exists():
        training_frames(data, species)
    run_dir = tmp / name
    config = training_config(model, species, data, run_dir, inner_r_max(model), **train_options)
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run(BIN / "nequip-train", "-cp", tmp, "-cn", name, f"hydra.run.dir={run_dir}")
    ckpt = out_dir / f"{name}.ckpt"
    shutil.copy(run_dir / "last.ckpt", ckpt)
    run(BIN / "nequip-package", "build", ckpt, out_dir / f"{name}.nequip.zip")
    if deflated:
        deflate(out_dir / f"{name}.nequip.zip")
    return ckpt, out_dir / f"{name}.nequip.zip"


# ------------------------------------------------------------------------------ evaluation
def versions():
    import nequip
    import torch

    try:
        import allegro

        allegro_version = allegro.__version__
    except ImportError:
        allegro_version = None
    return {
        "nequip": str(nequip.__version__),
        "allegro": allegro_version and str(allegro_version),
        "torch": str(torch.__version__),
    }


def calculator(path):
    if nequip_version().startswith("0.13"):
        from nequip.ase import NequIPCalculator

        load = (NequIPCalculator._from_packaged_model if str(path).endswith(".zip")
                else NequIPCalculator._from_checkpoint_model)  # fmt: skip
        return load(str(path), device="cpu")
    from nequip.integrations.ase import NequIPCalculator

    return NequIPCalculator._from_saved_model(str(path), device="cpu",
                                              neighborlist_backend="matscipy")  # fmt: skip


def evaluate(calc, atoms):
    import torch

    atoms.calc = calc
    stress = atoms.get_stress() if atoms.pbc.any() else np.full(6, np.nan)
    return {
        "numbers": torch.tensor(atoms.numbers), "positions": torch.tensor(atoms.positions),
        "cell": torch.tensor(atoms.cell.array), "pbc": torch.tensor(atoms.pbc),
        "energy": float(atoms.get_potential_energy()),
        "energies": torch.tensor(atoms.get_potential_energies(), dtype=torch.float64),
        "forces": torch.tensor(atoms.get_forces(), dtype=torch.float64),
        "stress": torch.tensor(stress, dtype=torch.float64),
    }  # fmt: skip


def model_dtype(model):
    while "model" in model:
        model = model["model"]
    return model.get("model_dtype")


def build(cases, build_dir):
    import torch

    OUT.mkdir(parents=True, exist_ok=True)
    build_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, (model, species) in cases.items():
            files = train_and_package(name, model, species, OUT, tmp, data_dir=build_dir)
            outputs = {}
            for path in files:
                calc = calculator(path)
                outputs[path.name] = [
                    {"name": label, **evaluate(calc, atoms)}
                    for label, atoms in structures(inner_type_names(model)).items()
                ]  # fmt: skip
            dtype = model_dtype(model) or "float32 (from nequip-oam-like)"
            torch.save({"outputs": outputs, "versions": {p.name: versions() for p in files},
                        "model_dtype": {p.name: dtype for p in files}},
                       build_dir / f"{name}.pt")  # fmt: skip
            for path in files:
                print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB", flush=True)


# files derived from the trained ones by the reference's own tools (after ``build``)
GPU_MODIFIERS = {
    "nequip-oam-like": ("nequip-oam-like-oeq", "enable_OpenEquivariance"),
    "allegro-oam-like": ("allegro-oam-like-cueq", "enable_CuEquivarianceContracter"),
}
PKG_MODIFY_SHIFTS = {"Cu": -3.6, "Au": -3.2, "Pt": -5.5}


def derived(build_dir):
    """GPU-modifier configs and a ``nequip-package modify``'d package.

    * ``<name>-oeq.ckpt`` / ``<name>-cueq.ckpt``: the trained checkpoint with the (non-persistent,
      GPU-only) acceleration modifier that the real training configs list put into its
      ``modify`` wrapper's ``modifiers`` -- a config-only edit, the weights are the same (the
      modifiers keep the state dict). The reference builds checkpoints with persistent
      modifiers only, so it loads them on a CPU. ``.nequip.zip``: ``nequip-package build`` of
      that file (also persistent modifiers only: the pickled model is the plain one, while
      config.yaml lists the GPU modifier, as in the real packages).
    * ``nequip-oam-like-pkgmodify.nequip.zip``: ``nequip-package modify --modifier
      modify_PerTypeScaleShift shifts=...`` of ``nequip-oam-like.nequip.zip``: the pickled
      model gets new shifts, config.yaml stays the original training config (it no longer
      describes the model).
    """
    import torch

    notes = {}
    outputs, vers, dtypes = {}, {}, {}
    for base, (name, modifier) in GPU_MODIFIERS.items():
        ckpt = torch.load(OUT / f"{base}.ckpt", map_location="cpu", weights_only=True)
        model = ckpt["hyper_parameters"]["info_dict"]["training_module"]["model"]
        assert model["_target_"] == "nequip.model.modify", model["_target_"]
        model["modifiers"] = [{"modifier": modifier}]
        torch.save(ckpt, OUT / f"{name}.ckpt")
        run(BIN / "nequip-package", "build", OUT / f"{name}.ckpt", OUT / f"{name}.nequip.zip")
        deflate(OUT / f"{name}.nequip.zip")
        notes[f"{name}.ckpt"] = f"{base}.ckpt with modifiers [{modifier}] put into its config"
        notes[f"{name}.nequip.zip"] = f"nequip-package build {name}.ckpt"
        for key in (f"{name}.ckpt", f"{name}.nequip.zip"):
            outputs[key] = [{"name": label, **evaluate(calculator(OUT / key), atoms)}
                            for label, atoms in structures(TYPES89).items()]  # fmt: skip
            vers[key], dtypes[key] = versions(), "float32"
    name = "nequip-oam-like-pkgmodify.nequip.zip"
    shifts = "{" + ", ".join(f"{k}: {v}" for k, v in PKG_MODIFY_SHIFTS.items()) + "}"
    run(BIN / "nequip-package", "modify", OUT / "nequip-oam-like.nequip.zip", OUT / name,
        "--modifier", "modify_PerTypeScaleShift", f"shifts={shifts}")  # fmt: skip
    deflate(OUT / name)
    outputs[name] = [{"name": label, **evaluate(calculator(OUT / name), atoms)}
                     for label, atoms in structures(TYPES89).items()]  # fmt: skip
    vers[name], dtypes[name] = versions(), "float32"
    notes[name] = ("nequip-package modify nequip-oam-like.nequip.zip --modifier "
                   f"modify_PerTypeScaleShift shifts={shifts}")  # fmt: skip
    torch.save({"outputs": outputs, "versions": vers, "model_dtype": dtypes, "notes": notes},
               build_dir / "derived.pt")  # fmt: skip


def cross_version(build_dir):
    """The newer reference (this venv) on the old-version files: outputs, or why it fails."""
    import torch

    result = {}
    for name in old_cases():
        for path in (OUT / f"{name}.ckpt", OUT / f"{name}.nequip.zip"):
            try:
                calc = calculator(path)
                result[path.name] = [{"name": label, **evaluate(calc, atoms)}
                                     for label, atoms in structures(TYPES89).items()]  # fmt: skip
            except Exception as error:  # noqa: BLE001  (recorded: the point of the exercise)
                result[path.name] = f"{type(error).__name__}: {error}"[:2000]
    torch.save({"cross_version": result, "cross_version_versions": versions()},
               build_dir / "cross_version.pt")  # fmt: skip


def merge(build_dir):
    import torch

    merged = {"outputs": {}, "versions": {}, "model_dtype": {}, "notes": {},
              "cross_version": {}, "cross_version_versions": {}}  # fmt: skip
    for part in sorted(build_dir.glob("*.pt")):
        data = torch.load(part, weights_only=True)
        for key in merged:
            merged[key].update(data.get(key, {}))
    torch.save(merged, OUT / "reference_outputs.pt")
    print(f"reference_outputs.pt: {len(merged['outputs'])} files, "
          f"{(OUT / 'reference_outputs.pt').stat().st_size / 1024:.0f} KiB")  # fmt: skip


# ------------------------------------------------------------------------------- inventory
def pickled_globals(data, nested=None):
    """(module, name) pairs that a pickle imports (GLOBAL / STACK_GLOBAL opcodes).

    Byte strings inside it that are pickles themselves (e3nn's codegen'd ``torch.fx``
    modules) or torch.save zips are scanned too; their globals go to ``nested``.
    """
    import io

    found, pushed, memo = set(), [], {}
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            pushed.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1] if pushed else None
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
        elif op.name == "GLOBAL":
            found.add(tuple(arg.split(" ", 1)))
            pushed.append(None)
        elif op.name == "STACK_GLOBAL":
            found.add((pushed[-2], pushed[-1]))
            pushed.append(None)
        else:
            if nested is not None and op.name in ("SHORT_BINBYTES", "BINBYTES", "BINBYTES8"):
                if arg[:1] == b"\x80":
                    nested.update(pickled_globals(arg, nested))
                elif arg[:2] == b"PK":
                    with zipfile.ZipFile(io.BytesIO(arg)) as z:
                        for name in z.namelist():
                            if name.endswith(".pkl"):
                                nested.update(pickled_globals(z.read(name), nested))
            pushed.append(None)
    return sorted(found)


def inventory():
    """What each file holds: configs, state-dict keys and shapes, pickled classes."""
    import torch
    import yaml

    info = {}
    for path in sorted(OUT.glob("*.ckpt")):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        sd = ckpt["state_dict"]
        info[path.name] = {
            "model_config": ckpt["hyper_parameters"]["info_dict"]["training_module"]["model"],
            "versions": ckpt["hyper_parameters"]["info_dict"].get("versions"),
            "state_dict": {k: [list(v.shape), str(v.dtype).replace("torch.", "")]
                           for k, v in sd.items() if hasattr(v, "shape")},
        }  # fmt: skip
    for path in sorted(OUT.glob("*.nequip.zip")):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            prefix = names[0].split("/")[0]
            config = yaml.safe_load(z.read(f"{prefix}/model/config.yaml"))
            meta = yaml.safe_load(z.read(f"{prefix}/model/package_metadata.txt"))
            pkls, nested = {}, {}
            for n in names:
                if n.endswith(".pkl") and "/model/" in n:
                    key = n.split("/")[-1]
                    nested[key] = set()
                    pkls[key] = pickled_globals(z.read(n), nested[key])
                    nested[key] = sorted(set(nested[key]) - set(pkls[key]))
        info[path.name] = {
            "members": sorted(n[len(prefix) + 1:] for n in names
                              if not n[len(prefix) + 1:].startswith((".data/", "nequip/",
                                                                     "allegro/", "e3nn/"))),
            "package_metadata": meta,
            "model_config": config["training_module"]["model"],
            "pickled_globals": {k: [".".join(g) for g in v] for k, v in pkls.items()},
            "nested_pickled_globals": {k: [".".join(g) for g in v] for k, v in nested.items()},
        }  # fmt: skip
    (OUT / "inventory.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
    print(f"inventory.json: {(OUT / 'inventory.json').stat().st_size / 1024:.0f} KiB")


# ------------------------------------------------------------------------------- full size
def full_size(out_dir):
    """Random-weight full-size NequIP-OAM-L / Allegro-OAM-L look-alikes (not committed)."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"outputs": {}, "versions": {}, "model_dtype": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, model in FULL_SIZE.items():
            # one optimizer step with lr 0 (and weight decay 0): a real checkpoint holding the
            # initial random weights (max_epochs 0 writes none); the EMA equals the raw weights
            files = train_and_package(name, wrap(model), METALS, out_dir, tmp, lr=0.0,
                                      batches=1, deflated=False)  # fmt: skip
            for path in files:
                calc = calculator(path)
                result["outputs"][path.name] = [
                    {"name": "fcc24", **evaluate(calc, full_size_cell())}
                ]
                result["versions"][path.name] = versions()
                result["model_dtype"][path.name] = model["model_dtype"]
                print(f"{path.name}: {path.stat().st_size / 2**20:.1f} MiB", flush=True)
    torch.save(result, out_dir / "reference_outputs.pt")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="*", help="0.19.1 cases to build (default all)")
    parser.add_argument("--old", action="store_true", help="build the old-version cases only")
    parser.add_argument("--merge", action="store_true", help="only merge and inventory")
    parser.add_argument("--derived", action="store_true", help="only the derived files")
    parser.add_argument("--build", type=Path, default=DEFAULT_BUILD)
    parser.add_argument("--old-python", default=OLD_PYTHON)
    parser.add_argument("--full-size", metavar="DIR")
    args = parser.parse_args()
    if args.full_size:
        return full_size(args.full_size)
    if args.old:
        return build(old_cases(), args.build)
    if args.derived:
        derived(args.build)
        cross_version(args.build)
    elif not args.merge:
        cases = new_cases()
        names = args.cases if args.cases is not None else list(cases)
        build({k: cases[k] for k in names}, args.build)
        if args.cases is None:
            derived(args.build)
            run(args.old_python, __file__, "--old", "--build", args.build)
            cross_version(args.build)
    merge(args.build)
    inventory()


if __name__ == "__main__":
    main()
