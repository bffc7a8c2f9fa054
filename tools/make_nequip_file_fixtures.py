"""Write tests/data/nequip_files/: files written by the reference framework and its outputs.

Run with the interpreter of the venv holding the reference framework (see
``make_reference_fixtures.py`` for how it is made)::

    OMP_NUM_THREADS=1 refvenv/bin/python tools/make_nequip_file_fixtures.py [--pt2]

For one tiny Allegro model (float64, asymmetric per-edge-type cutoffs) and one tiny NequIP
model (float32) it

1. writes six Cu/Au EMT frames to an extxyz file and trains the model on it with
   ``nequip-train`` for 4 optimizer steps (EMA on, so the EMA and raw weights differ; the
   data statistics reach the model through ``${training_data_stats:...}``);
2. keeps the last checkpoint as ``<name>.ckpt``, packages it with ``nequip-package build``
   into ``<name>.nequip.zip`` (rewritten with the same members deflate-compressed, 650 -> 200
   KiB: torch.package stores them uncompressed; the reference reads both alike) and saves a TorchScript ``<name>.nequip.pth`` (nequip-compile
   refuses TorchScript on torch >= 2.10, so through the function it would call); with
   ``--pt2`` it also compiles ``<name>.nequip.pt2`` (AOTInductor, CPU, ``--target ase``);
3. evaluates every file with the reference ``NequIPCalculator`` (matscipy neighbour list) on
   the structures of ``make_reference_fixtures.py`` and saves the results in
   ``reference_outputs.pt`` (loads with ``torch.load(weights_only=True)``).
"""

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

sys.path.insert(0, str(Path(__file__).parent))
from make_reference_fixtures import structures  # noqa: E402  (sets the reference's global state)
from nequip.integrations.ase import NequIPCalculator  # noqa: E402
from reference_runs import deflate, run  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "nequip_files"
BIN = Path(sys.executable).parent
TYPES = ["Cu", "Au"]
STATS = "${training_data_stats:%s}"
MODELS = {
    "allegro": {
        "_target_": "allegro.model.AllegroModel", "seed": 11, "model_dtype": "float64",
        "type_names": TYPES, "r_max": 4.5, "per_edge_type_cutoff": {"Cu": {"Au": 4.0}, "Au": 4.2},
        "l_max": 1, "parity": True, "num_layers": 2, "num_scalar_features": 8,
        "num_tensor_features": 4, "radial_chemical_embed_dim": 8,
        "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed",
                                  "num_bessels": 6},
        "scalar_embed_mlp_hidden_layers_width": 8, "allegro_mlp_hidden_layers_width": 8,
        "readout_mlp_hidden_layers_width": 8,
        "avg_num_neighbors": STATS % "per_type_num_neighbors_mean",
        "per_type_energy_shifts": STATS % "per_atom_energy_mean",
        "per_type_energy_scales": STATS % "per_type_forces_rms",
    },
    "nequip": {
        "_target_": "nequip.model.NequIPGNNModel", "seed": 12, "model_dtype": "float32",
        "type_names": TYPES, "r_max": 4.5, "l_max": 1, "parity": True, "num_layers": 2,
        "num_features": 4, "radial_mlp_depth": 1, "radial_mlp_width": 8,
        "avg_num_neighbors": STATS % "num_neighbors_mean",
        "per_type_energy_shifts": STATS % "per_atom_energy_mean",
        "per_type_energy_scales": STATS % "forces_rms",
    },
}  # fmt: skip


def training_frames(path):
    """Six rattled fcc Cu6Au2 cells (two strained) labelled by EMT."""
    rng = np.random.default_rng(7)
    frames = []
    for k in range(6):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 1, 1)
        atoms.numbers[rng.choice(len(atoms), 2, replace=False)] = 79
        atoms.set_cell(atoms.cell * (1 + 0.02 * (k % 3 - 1)), scale_atoms=True)
        atoms.rattle(0.12, seed=k)
        atoms.calc = EMT()
        results = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                       stress=atoms.get_stress())  # fmt: skip
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    write(path, frames, format="extxyz")


def training_config(model, data_file, out_dir):
    transforms = [
        {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
         "model_type_names": TYPES, "chemical_species_to_atom_type_map": {t: t for t in TYPES}},
        {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": 4.5},
    ]  # fmt: skip
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": 1}
    metrics = {"_target_": "nequip.train.EnergyForceStressMetrics",
               "coeffs": {"total_energy_mae": 1.0, "forces_mae": 1.0, "stress_mae": 1.0}}  # fmt: skip
    return {
        "run": ["train"],
        "data": {
            "_target_": "nequip.data.datamodule.NequIPDataModule", "seed": 3,
            "split_dataset": {"dataset": {"_target_": "nequip.data.dataset.ASEDataset",
                                          "file_path": str(data_file), "transforms": transforms},
                              "train": 4, "val": 2},
            "train_dataloader": loader, "val_dataloader": loader,
            "stats_manager": {"_target_": "nequip.data.CommonDataStatisticsManager",
                              "type_names": TYPES},
        },
        "trainer": {
            "_target_": "lightning.Trainer", "max_epochs": 1, "logger": False,
            "enable_progress_bar": False, "num_sanity_val_steps": 0,
            "callbacks": [{"_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "dirpath": str(out_dir), "save_last": True}],
        },
        "training_module": {
            "_target_": "nequip.train.EMALightningModule", "ema_decay": 0.999,
            "loss": {"_target_": "nequip.train.EnergyForceStressLoss", "per_atom_energy": True,
                     "coeffs": {"total_energy": 1.0, "forces": 1.0, "stress": 1.0}},
            "val_metrics": metrics,
            "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.05},
            "model": model,
        },
    }  # fmt: skip


def save_torchscript(ckpt, path):
    """What ``nequip-compile --mode torchscript`` does, minus its torch < 2.10 guard."""
    from nequip.model.inference_models.torchscript import save_torchscript_model
    from nequip.model.saved_models.load_utils import load_saved_model
    from nequip.utils.global_state import get_latest_global_state

    model = load_saved_model(str(ckpt), "eager", "sole_model")
    metadata = {**model.metadata, **get_latest_global_state(only_metadata_related=True)}
    metadata = {k: str(int(v)) if isinstance(v, bool) else v for k, v in metadata.items()}
    save_torchscript_model(model, metadata, str(path), "cpu")


def evaluate(calc, atoms):
    atoms.calc = calc
    stress = atoms.get_stress() if atoms.pbc.any() else np.full(6, np.nan)
    return {
        "numbers": torch.tensor(atoms.numbers), "positions": torch.tensor(atoms.positions),
        "cell": torch.tensor(atoms.cell.array), "pbc": torch.tensor(atoms.pbc),
        "energy": float(atoms.get_potential_energy()),
        "energies": torch.tensor(atoms.get_potential_energies()),
        "forces": torch.tensor(atoms.get_forces()), "stress": torch.tensor(stress),
    }  # fmt: skip


def main(pt2=False):
    OUT.mkdir(parents=True, exist_ok=True)
    outputs = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        training_frames(tmp / "frames.xyz")
        for name, model in MODELS.items():
            run_dir = tmp / name
            config = training_config(model, tmp / "frames.xyz", run_dir)
            (tmp / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            run(BIN / "nequip-train", "-cp", tmp, "-cn", name, f"hydra.run.dir={run_dir}")
            ckpt = OUT / f"{name}.ckpt"
            shutil.copy(run_dir / "last.ckpt", ckpt)
            run(BIN / "nequip-package", "build", ckpt, OUT / f"{name}.nequip.zip")
            deflate(OUT / f"{name}.nequip.zip")
            save_torchscript(ckpt, OUT / f"{name}.nequip.pth")
            files = {"ckpt": ckpt, "zip": OUT / f"{name}.nequip.zip"}
            compiled = {"pth": OUT / f"{name}.nequip.pth"}
            if pt2:
                compiled["pt2"] = OUT / f"{name}.nequip.pt2"
                run(BIN / "nequip-compile", ckpt, compiled["pt2"], "--mode", "aotinductor",
                    "--device", "cpu", "--target", "ase")  # fmt: skip
            calcs = {kind: NequIPCalculator._from_saved_model(str(path), device="cpu")
                     for kind, path in files.items()}  # fmt: skip
            calcs |= {kind: NequIPCalculator.from_compiled_model(str(path), device="cpu")
                      for kind, path in compiled.items()}  # fmt: skip
            outputs[name] = {
                kind: [{"name": label, **evaluate(calc, atoms)}
                       for label, atoms in structures().items()]
                for kind, calc in calcs.items()
            }  # fmt: skip
    torch.save({"nequip": "0.19.1", "nequip_allegro": "0.8.3", "outputs": outputs},
               OUT / "reference_outputs.pt")  # fmt: skip
    for path in sorted(OUT.iterdir()):
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(pt2="--pt2" in sys.argv)
