"""Check that the reference ASE calculator reproduces our numbers from our exported files.

Two steps, two interpreters (the reference framework is never our dependency)::

    # 1. our venv: export tiny random-weight models with --target ase, list the structures
    venv/bin/python tools/check_export_with_reference.py export WORKDIR
    # 2. the reference venv (nequip 0.19.1, nequip-allegro 0.8.3, same torch): evaluate them
    refvenv/bin/python tools/check_export_with_reference.py reference WORKDIR

Step 2 loads each ``WORKDIR/<architecture>.nequip.pt2`` with
``nequip.integrations.ase.NequIPCalculator.from_compiled_model`` (matscipy neighbour list,
per-edge-type cutoffs from the file's metadata), evaluates energy, per-atom energies, forces
and (periodic) stress, prints the largest difference from our calculator's numbers of step 1,
and writes ``tests/data/export_reference.json``: each model's architecture and config (the
test rebuilds the same weights from its seed), the structures and the reference's results.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "export_reference.json"
COMMON = dict(
    type_names=["Cu", "Au", "H"],
    r_max=4.0,
    avg_num_neighbors=18.0,
    num_bessels=6,
    per_type_energy_scales={"Cu": 0.7, "Au": 1.3, "H": 0.4},
    per_type_energy_shifts={"Cu": -3.5, "Au": -3.1, "H": -1.2},
    per_edge_type_cutoff={"Cu": {"Au": 3.2}, "Au": 3.6},
    model_dtype="float64",
    seed=7,
)
MODELS = {
    "allegro": dict(
        COMMON,
        l_max=2,
        num_scalar_features=16,
        num_tensor_features=4,
        scalar_embed_mlp_hidden_layers_width=16,
        allegro_mlp_hidden_layers_width=16,
        readout_mlp_hidden_layers_width=8,
    ),
    "nequip": dict(
        COMMON, avg_num_neighbors=12.0, l_max=2, num_layers=2, num_features=6, radial_mlp_width=8
    ),
}


def structures():
    """Bulk alloy, triclinic cell, [T, T, F] slab and a cluster (Cu, Au, H)."""
    from ase import Atoms
    from ase.build import bulk, fcc111

    alloy = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 1, 1)
    alloy.numbers[[1, 4]] = 79
    alloy.numbers[6] = 1
    alloy.rattle(0.1, seed=0)
    triclinic = Atoms(
        "Cu3AuH",
        scaled_positions=[[0.1, 0.2, 0.3], [0.6, 0.1, 0.8], [0.3, 0.7, 0.2], [0.8, 0.6, 0.5],
                          [0.4, 0.4, 0.9]],
        cell=[[3.9, 0.0, 0.0], [1.1, 3.6, 0.0], [0.7, -0.9, 4.2]],
        pbc=True,
    )  # fmt: skip
    slab = fcc111("Cu", size=(2, 2, 2), a=3.7, vacuum=4.0)
    slab.numbers[0] = 79
    slab.rattle(0.05, seed=3)
    cluster = Atoms(
        "Cu2AuH",
        positions=[[0, 0, 0], [2.4, 0.3, 0.1], [1.1, 2.2, -0.4], [0.9, 0.8, 1.6]],
    )
    return {"alloy": alloy, "triclinic": triclinic, "slab": slab, "cluster": cluster}


def results_of(atoms):
    out = {
        "energy": float(atoms.get_potential_energy()),
        "energies": atoms.get_potential_energies().tolist(),
        "forces": atoms.get_forces().tolist(),
    }
    if atoms.pbc.any():
        out["stress"] = atoms.get_stress(voigt=False).tolist()
    return out


def export(workdir: Path) -> None:
    from allegro_ase import AllegroCalculator
    from allegro_ase.io.export import export_model
    from allegro_ase.models import build_model

    workdir.mkdir(parents=True, exist_ok=True)
    cases = []
    for architecture, config in MODELS.items():
        model = build_model(architecture, config)
        start = time.perf_counter()
        export_model(model, workdir / f"{architecture}.nequip.pt2", "ase")
        print(f"{architecture}: compiled in {time.perf_counter() - start:.0f} s")
        calc = AllegroCalculator(model, device="cpu")
        ours = {}
        for name, atoms in structures().items():
            atoms.calc = calc
            ours[name] = results_of(atoms)
        cases.append({"architecture": architecture, "config": config, "ours": ours})
    (workdir / "cases.json").write_text(json.dumps(cases))


def reference(workdir: Path) -> None:
    import ase
    import nequip
    import torch
    from nequip.integrations.ase import NequIPCalculator
    from nequip.utils.global_state import set_global_state

    set_global_state()  # the reference requires it (float64 default dtype)
    cases = json.loads((workdir / "cases.json").read_text())
    fixture = {
        "made_by": "tools/check_export_with_reference.py",
        "versions": {"torch": torch.__version__, "nequip": nequip.__version__,
                     "ase": ase.__version__},
        "cases": [],
    }  # fmt: skip
    for case in cases:
        architecture = case["architecture"]
        calc = NequIPCalculator.from_compiled_model(
            str(workdir / f"{architecture}.nequip.pt2"), device="cpu"
        )
        records = []
        for name, atoms in structures().items():
            atoms.calc = calc
            theirs, ours = results_of(atoms), case["ours"][name]
            worst = max(float(np.abs(np.subtract(theirs[k], ours[k])).max()) for k in ours)
            print(f"{architecture:8s} {name:10s} max |reference - ours| = {worst:.2e}")
            records.append(
                {
                    "name": name,
                    "numbers": atoms.numbers.tolist(),
                    "positions": atoms.positions.tolist(),
                    "cell": atoms.cell.array.tolist(),
                    "pbc": atoms.pbc.tolist(),
                    **theirs,
                }
            )
        fixture["cases"].append(
            {"architecture": architecture, "config": case["config"], "structures": records}
        )
    FIXTURE.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"written {FIXTURE}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("export", "reference"):
        sys.exit(__doc__)
    {"export": export, "reference": reference}[sys.argv[1]](Path(sys.argv[2]))
