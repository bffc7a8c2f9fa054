"""The reference framework's twin of ``allegro-emt-metals``, for ``compare_lammps.py``.

Run with the interpreter of the venv holding the reference framework (torch must be the
version of our venv, whose libtorch LAMMPS links; see ``make_reference_fixtures.py``)::

    OMP_NUM_THREADS=1 refvenv/bin/python tools/make_lammps_reference_model.py OUTDIR

Builds an ``allegro.model.AllegroModel`` with the architecture of the shipped
``allegro-emt-metals`` (``pretrained/allegro-emt-metals/card.md``): types Al Cu Ag Au, r_max 6 Å,
l_max 2 with parity, 2 layers, 32 scalar / 8 tensor features (coupled paths), 8 fixed Bessel
functions (p = 6), scalar-embedding / Allegro / readout MLPs one hidden layer of 32 / 32 / 16
(silu), ZBL repulsion (the reference's, smoothly cut off at r_max; the shipped model's is cut at
2 Å), float32, and the shipped model's average neighbour count, per-type energy shifts and scale. Its weights are random (seed 0), then trained for one epoch
(4 steps) on the six EMT frames of ``make_nequip_file_fixtures.py``, because packaging needs a
checkpoint: the model is for timing and parity, not accuracy. Writes

- ``OUTDIR/allegro-emt-twin.nequip.zip`` (``nequip-package build``; ours loads it with
  ``allegro_ase.io.load_model`` and exports it with ``allegro-ase export``), and
- ``OUTDIR/allegro-emt-twin-ref.nequip.pt2`` (``nequip-compile ... --mode aotinductor --device
  cpu --target pair_allegro``, for LAMMPS' ``pair_style allegro``).
"""

import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from make_nequip_file_fixtures import BIN, training_config, training_frames  # noqa: E402
from reference_runs import run  # noqa: E402

TYPES = ["Al", "Cu", "Ag", "Au"]
MODEL = {
    "_target_": "allegro.model.AllegroModel", "seed": 0, "model_dtype": "float32",
    "type_names": TYPES, "r_max": 6.0, "l_max": 2, "parity": True, "num_layers": 2,
    "num_scalar_features": 32, "num_tensor_features": 8, "tp_path_channel_coupling": True,
    "radial_chemical_embed_dim": 32,  # = num_scalar_features, the reference's default
    "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed",
                              "num_bessels": 8, "bessel_trainable": False,
                              "polynomial_cutoff_p": 6},
    "scalar_embed_mlp_hidden_layers_depth": 1, "scalar_embed_mlp_hidden_layers_width": 32,
    "allegro_mlp_hidden_layers_depth": 1, "allegro_mlp_hidden_layers_width": 32,
    "readout_mlp_hidden_layers_depth": 1, "readout_mlp_hidden_layers_width": 16,
    "avg_num_neighbors": 49.89269979824598, "per_type_energy_scales": 0.6313715713439076,
    "per_type_energy_shifts": {"Al": 0.19383788124948198, "Cu": 0.23452499318721454,
                               "Ag": 0.1787563764341052, "Au": 0.16850584980863337},
    "pair_potential": {"_target_": "nequip.nn.pair_potential.ZBL", "units": "metal",
                       "chemical_species": TYPES},
}  # fmt: skip


def main(out: Path) -> None:
    """Train, package and compile the twin into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        training_frames(tmp / "frames.xyz")
        config = training_config(MODEL, tmp / "frames.xyz", tmp / "run")
        mapper, neighbors = config["data"]["split_dataset"]["dataset"]["transforms"]
        mapper["model_type_names"] = TYPES
        mapper["chemical_species_to_atom_type_map"] = {t: t for t in TYPES}
        neighbors["r_max"] = MODEL["r_max"]
        config["data"]["stats_manager"]["type_names"] = TYPES
        (tmp / "twin.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        run(BIN / "nequip-train", "-cp", tmp, "-cn", "twin", f"hydra.run.dir={tmp / 'run'}")
        package = out / "allegro-emt-twin.nequip.zip"
        run(BIN / "nequip-package", "build", tmp / "run" / "last.ckpt", package)
    run(BIN / "nequip-compile", package, out / "allegro-emt-twin-ref.nequip.pt2",
        "--mode", "aotinductor", "--device", "cpu", "--target", "pair_allegro")  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
