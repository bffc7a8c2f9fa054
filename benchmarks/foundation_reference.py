"""Reference side of ``foundation_timing.py``: build, cache, compile and time nequip's models.

Runs ONLY with the interpreter of the reference venv (nequip 0.19 + nequip-allegro 0.8)::

    /work/refvenv/bin/python benchmarks/foundation_reference.py build NequIP-OAM-L
    /work/refvenv/bin/python benchmarks/foundation_reference.py compile NequIP-OAM-L
    /work/refvenv/bin/python benchmarks/foundation_reference.py worker NequIP-OAM-L \
        --kind eager --calls 10

``build`` instantiates the builder of ``foundation_configs.MODELS[NAME]`` (random, seeded
weights) and writes ``kwargs.json`` and ``state_dict.pt`` (tensors only, the GraphModel's own
names: ``model.func.<module path>``) into ``CACHE/<model key>/``.

``compile`` does in process what ``nequip-compile --mode aotinductor --device cpu --target
ase`` does after loading a checkpoint: the same metadata (model metadata + global state +
input/output fields), the ``ase`` target's static single frame and dynamic node/edge
counts, and ``nequip.utils.aot.aot_export_model`` with its own eager-vs-AOTI check. The CLI
itself needs a ``.ckpt``/``.nequip.zip`` (a training run); the traced model here is the
same eager module with the cached weights. Writes ``model.nequip.pt2`` and ``compile.json``.

``worker`` loads one calculator (``eager``: ``NequIPCalculator`` around the module;
``aoti``: ``NequIPCalculator.from_compiled_model``; both with the matscipy neighbour list)
and answers timing requests (``foundation_configs.serve``).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from foundation_configs import MODELS, cell, model_key, serve  # noqa: E402

DEFAULT_CACHE = Path(os.environ.get("ALLEGRO_ASE_BENCH_CACHE", "~/.cache/allegro-ase-bench"))


def _builder(target: str):
    module, name = target.rsplit(".", 1)
    return getattr(__import__(module, fromlist=[name]), name)


def build_model(name: str, cache: Path, load_weights: bool = True):
    """The reference GraphModel of ``name`` (eval mode), with the cached weights if any."""
    import torch
    from nequip.utils.global_state import set_global_state

    set_global_state()
    kwargs = dict(MODELS[name])
    model = _builder(kwargs.pop("_target_"))(**kwargs)
    weights = cache / model_key(name) / "state_dict.pt"
    if load_weights and weights.is_file():
        model.load_state_dict(torch.load(weights, weights_only=True))
    return model.eval()


def build(name: str, cache: Path) -> None:
    import torch

    folder = cache / model_key(name)
    if (folder / "state_dict.pt").is_file():
        print(f"{folder}/state_dict.pt exists")
        return
    folder.mkdir(parents=True, exist_ok=True)
    model = build_model(name, cache, load_weights=False)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(state, folder / "state_dict.pt.partial")
    (folder / "kwargs.json").write_text(json.dumps(MODELS[name], indent=1))
    os.replace(folder / "state_dict.pt.partial", folder / "state_dict.pt")
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {params} parameters -> {folder}")


def calculator(name: str, kind: str, cache: Path):
    from nequip.integrations.ase import NequIPCalculator
    from nequip.integrations.utils import basic_transforms

    if kind == "aoti":
        path = cache / model_key(name) / "model.nequip.pt2"
        return NequIPCalculator.from_compiled_model(
            str(path), device="cpu", neighborlist_backend="matscipy"
        )
    model = build_model(name, cache)
    types = list(MODELS[name]["type_names"])
    transforms = basic_transforms(
        model.metadata, MODELS[name]["r_max"], types, {t: t for t in types}, "matscipy"
    )
    return NequIPCalculator(model, device="cpu", transforms=transforms)


def compile_aoti(name: str, cache: Path, n_atoms: int) -> None:
    """AOTInductor export as ``nequip-compile --mode aotinductor --device cpu --target ase``."""
    import torch
    from nequip.scripts._compile_utils import COMPILE_TARGET_DICT
    from nequip.scripts.compile import _AOT_METADATA_KEY, _COMPILE_SEED, _parse_bounds_to_Dim
    from nequip.utils.aot import aot_export_model
    from nequip.utils.aoti_metadata import (
        NEQUIP_AOTI_INPUTS_KEY,
        NEQUIP_AOTI_OUTPUTS_KEY,
        serialize_aoti_keys,
    )
    from nequip.utils.global_state import get_latest_global_state

    folder = cache / model_key(name)
    if (folder / "model.nequip.pt2").is_file():
        print(f"{folder}/model.nequip.pt2 exists")
        return
    torch.set_num_threads(1)
    calc = calculator(name, "eager", cache)
    model = calc.model
    metadata = {**model.metadata, **get_latest_global_state(only_metadata_related=True)}
    metadata = {k: str(int(v)) if isinstance(v, bool) else v for k, v in metadata.items()}
    target = COMPILE_TARGET_DICT["ase"]
    dims = {"graph": "num_frames", "node": "num_nodes", "edge": "num_edges"}
    batch_map = {k: _parse_bounds_to_Dim(dim, "2,inf") for k, dim in dims.items()}
    batch_map = target["batch_map_settings"](batch_map)
    data = target["data_settings"](calc.atoms_to_data(cell(name, n_atoms)))
    metadata[NEQUIP_AOTI_INPUTS_KEY] = serialize_aoti_keys(target["input"])
    metadata[NEQUIP_AOTI_OUTPUTS_KEY] = serialize_aoti_keys(target["output"])
    configs = {_AOT_METADATA_KEY: {k: str(v) for k, v in metadata.items()}}
    start, cpu = time.perf_counter(), time.process_time()
    aot_export_model(
        model=model, device=torch.device("cpu"), input_fields=target["input"],
        output_fields=target["output"], data=data, batch_map=batch_map,
        output_path=str(folder / "partial-model.nequip.pt2"), inductor_configs=configs,
        seed=_COMPILE_SEED,
    )  # fmt: skip
    os.replace(folder / "partial-model.nequip.pt2", folder / "model.nequip.pt2")
    record = {"wall_s": time.perf_counter() - start, "process_cpu_s": time.process_time() - cpu,
              "torch": torch.__version__, "traced_on_atoms": n_atoms}  # fmt: skip
    (folder / "compile.json").write_text(json.dumps(record))
    print(f"{name}: AOTI export {record['wall_s']:.0f} s -> {folder}/model.nequip.pt2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["build", "compile", "worker"])
    parser.add_argument("name", choices=sorted(MODELS))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--kind", choices=["eager", "aoti"], default="eager")
    parser.add_argument("--calls", type=int, default=0, help="timed + warm-up calls (worker)")
    parser.add_argument("--trace-atoms", type=int, default=24,
                        help="cell size for the export (fcc Cu: 32 atoms)")  # fmt: skip
    args = parser.parse_args()
    cache = args.cache.expanduser()
    if args.step == "build":
        build(args.name, cache)
    elif args.step == "compile":
        compile_aoti(args.name, cache, args.trace_atoms)
    else:
        import torch

        torch.set_num_threads(1)
        serve(calculator(args.name, args.kind, cache), args.calls)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
