"""Write tests/data/{allegro,nequip}_reference.pt: reference weights and their outputs.

Run with the interpreter of a venv holding the reference framework (never our dependency)::

    python3 -m venv refvenv && refvenv/bin/pip install torch==2.13.0
    refvenv/bin/pip install ase matscipy "nequip==0.19.*" "nequip-allegro==0.8.*"
    refvenv/bin/python tools/make_reference_fixtures.py [allegro] [nequip]

For each configuration it builds a random-weight float64 reference model
(``allegro.model.AllegroModel`` or ``nequip.model.NequIPGNNModel`` / ``PresetNequIPGNNModel``),
evaluates it with ``nequip.integrations.ase.NequIPCalculator`` (matscipy neighbour list) on a
few structures, and stores the builder arguments (JSON, with the builder under ``_target_`` for
NequIP), the state dict and the outputs. The files load with ``torch.load(weights_only=True)``.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk, fcc111
from nequip.utils.global_state import set_global_state

set_global_state()  # the reference requires it (it sets float64 as torch's default dtype)

from allegro.model import AllegroModel  # noqa: E402
from nequip.integrations.ase import NequIPCalculator  # noqa: E402
from nequip.integrations.utils import basic_transforms  # noqa: E402
from nequip.model import NequIPGNNModel, PresetNequIPGNNModel  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
TYPES = ["Cu", "Au"]
ALLEGRO_BASE = dict(
    seed=456, model_dtype="float64", type_names=TYPES, r_max=4.5, num_scalar_features=16,
    num_tensor_features=4, radial_chemical_embed_dim=16,
    radial_chemical_embed={"_target_": "allegro.nn.TwoBodyBesselScalarEmbed", "num_bessels": 8,
                           "bessel_trainable": False, "polynomial_cutoff_p": 6},
    scalar_embed_mlp_hidden_layers_depth=1, scalar_embed_mlp_hidden_layers_width=16,
    allegro_mlp_hidden_layers_depth=1, allegro_mlp_hidden_layers_width=16,
    readout_mlp_hidden_layers_depth=1, readout_mlp_hidden_layers_width=8,
    avg_num_neighbors={"Cu": 20.0, "Au": 25.0},
    per_type_energy_scales={"Cu": 0.7, "Au": 1.3}, per_type_energy_shifts={"Cu": -3.5, "Au": -3.1},
)  # fmt: skip
ALLEGRO_CONFIGS = {
    "lmax2-parity-coupled-2layers": dict(l_max=2, parity=True, tp_path_channel_coupling=True, num_layers=2),
    "lmax2-parity-uncoupled": dict(l_max=2, parity=True, tp_path_channel_coupling=False, num_layers=2),
    "lmax2-noparity": dict(l_max=2, parity=False, tp_path_channel_coupling=True, num_layers=2),
    "lmax1-1layer": dict(l_max=1, parity=True, tp_path_channel_coupling=True, num_layers=1),
    "lmax1-3layers-uncoupled-edge-cutoffs": dict(
        l_max=1, parity=False, tp_path_channel_coupling=False, num_layers=3,
        per_edge_type_cutoff={"Cu": {"Au": 3.9}, "Au": 4.2}),
    "lmax3-trainable-bessel-global-scale": dict(
        l_max=3, num_layers=2, per_type_energy_scales=0.9, avg_num_neighbors=22.0,
        radial_chemical_embed={**ALLEGRO_BASE["radial_chemical_embed"], "bessel_trainable": True}),
}  # fmt: skip
NEQUIP_BASE = dict(
    _target_="nequip.model.NequIPGNNModel", seed=789, model_dtype="float64", type_names=TYPES,
    r_max=4.5, num_features=6, radial_mlp_depth=1, radial_mlp_width=8,
    avg_num_neighbors={"Cu": 12.0, "Au": 15.0},
    per_type_energy_scales={"Cu": 7.0, "Au": 13.0}, per_type_energy_shifts={"Cu": -3.5, "Au": -3.1},
)  # fmt: skip
NEQUIP_CONFIGS = {
    "lmax1-parity-2layers-no-sc": dict(l_max=1, parity=True, num_layers=2, convnet_sc=False),
    "lmax2-parity-3layers-per-l-features-readout-mlp": dict(
        l_max=2, parity=True, num_layers=3, num_features=[6, 4, 2], type_embed_num_features=5,
        readout_mlp_hidden_layers_depth=1, readout_mlp_hidden_layers_width=4),
    "lmax1-noparity-3layers-resnet-edge-cutoffs": dict(
        l_max=1, parity=False, num_layers=3, convnet_resnet=True, radial_mlp_depth=2,
        per_edge_type_cutoff={"Cu": {"Au": 3.9}, "Au": 4.2}),
    "lmax2-noparity-1layer-trainable-bessel-global-linear-readout": dict(
        l_max=2, parity=False, num_layers=1, avg_num_neighbors=14.0, per_type_energy_scales=9.0,
        bessel_trainable=True, num_bessels=6, polynomial_cutoff_p=5,
        readout_mlp_hidden_layers_depth=1, readout_mlp_nonlinearity=None),
    "lmax1-parity-3layers-learnable-shift": dict(
        l_max=1, parity=True, num_layers=3, learnable_shift=True),
    "preset-S-small": dict(
        _target_="nequip.model.PresetNequIPGNNModel", preset="S", num_features=[6, 3],
        type_embed_num_features=4, radial_mlp_width=8),
}  # fmt: skip


def structures():
    rng = np.random.default_rng(0)
    alloy = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 1, 1)
    alloy.numbers[[1, 4]] = 79
    alloy.rattle(0.1, seed=0)
    cell = [[3.9, 0.0, 0.0], [1.1, 3.6, 0.0], [0.7, -0.9, 4.2]]
    triclinic = Atoms("Cu2Au", scaled_positions=[[0, 0, 0], [0.5, 0.4, 0.6], [0.2, 0.8, 0.3]],
                      cell=cell, pbc=True)  # fmt: skip
    slab = fcc111("Cu", size=(2, 2, 2), a=3.7, vacuum=4.0)
    slab.numbers[0] = 79
    slab.rattle(0.05, seed=3)
    cluster = Atoms("Cu3Au2", positions=rng.random((5, 3)) * 2.5 + np.arange(5)[:, None] * 0.9)
    thin = Atoms("CuAu", positions=[[0.1, 0.2, 0.0], [1.2, 1.6, 1.4]], pbc=True,
                 cell=[[2.4, 0.0, 0.0], [0.5, 3.1, 0.0], [0.3, 0.4, 2.9]])  # fmt: skip
    return {"alloy": alloy, "triclinic": triclinic, "slab": slab, "cluster": cluster,
            "thin_cell": thin, "isolated_atom": Atoms("Au")}  # fmt: skip


# what each architecture's fixture holds; the Allegro file predates the last two structures
FIXTURES = {
    "allegro": (AllegroModel, ALLEGRO_BASE, ALLEGRO_CONFIGS,
                ["alloy", "triclinic", "slab", "cluster"]),
    "nequip": (None, NEQUIP_BASE, NEQUIP_CONFIGS, list(structures())),
}  # fmt: skip
BUILDERS = {
    "nequip.model.NequIPGNNModel": NequIPGNNModel,
    "nequip.model.PresetNequIPGNNModel": PresetNequIPGNNModel,
}


def evaluate(model, r_max, atoms):
    transforms = basic_transforms(model.metadata, r_max, TYPES, {t: t for t in TYPES},
                                  neighborlist_backend="matscipy")  # fmt: skip
    atoms.calc = NequIPCalculator(model, device="cpu", transforms=transforms)
    stress = atoms.get_stress() if atoms.pbc.any() else np.full(6, np.nan)
    return {
        "numbers": torch.tensor(atoms.numbers), "positions": torch.tensor(atoms.positions),
        "cell": torch.tensor(atoms.cell.array), "pbc": torch.tensor(atoms.pbc),
        "energy": float(atoms.get_potential_energy()),
        "energies": torch.tensor(atoms.get_potential_energies()),
        "forces": torch.tensor(atoms.get_forces()), "stress": torch.tensor(stress),
    }  # fmt: skip


def write(architecture):
    builder, base, configs, names = FIXTURES[architecture]
    cases = []
    for name, changes in configs.items():
        kwargs = {**base, **changes}
        build = builder or BUILDERS[kwargs["_target_"]]
        model = build(**{k: v for k, v in kwargs.items() if k != "_target_"}).eval()
        outputs = [
            {"name": label, **evaluate(model, kwargs["r_max"], atoms)}
            for label, atoms in structures().items()
            if label in names
        ]
        # derived constants we recompute: Clebsch-Gordan (".w3j", "._w3j_"), e3nn output masks
        state = {
            k: v.detach().clone()
            for k, v in model.state_dict().items()
            if not (k.endswith((".w3j", ".output_mask")) or "._w3j_" in k)
        }
        cases.append({"name": name, "model_kwargs": json.dumps(kwargs), "state_dict": state,
                      "structures": outputs})  # fmt: skip
        print(f"{name}: {sum(v.numel() for v in state.values())} values")
    out = DATA / f"{architecture}_reference.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"nequip": "0.19", "nequip_allegro": "0.8", "cases": cases}, out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    for architecture in sys.argv[1:] or list(FIXTURES):
        write(architecture)
