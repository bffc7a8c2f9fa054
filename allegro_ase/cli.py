"""The ``allegro-ase`` command: ``models list|info|fetch|verify|register``, ``train``, ``export``.

``models`` takes zoo names and, for the models published on nequip.net, their ids
(``nequip.net:group/name:version``, :mod:`allegro_ase.nequip_files.hub`).

Each command group is an ``add_*`` function that adds its parser to the shared subcommands and
sets ``run``, a function ``(args) -> exit status``. To add a command (``train``, ``export``),
write such a function and append it to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from . import zoo
from .io import load_model
from .io.checkpoint import CheckpointError, read_metadata
from .io.registry import ModelEntry, ZooError, register
from .io.targets import TARGETS
from .nequip_files import hub


def add_models(commands: argparse._SubParsersAction) -> None:
    """Add ``models list|info|fetch|verify|register`` to the subcommands."""
    models = commands.add_parser("models", help="list, inspect, fetch and verify pretrained models")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="table of the registry's models").set_defaults(run=models_list)
    info = actions.add_parser("info", help="registry entry, file metadata and model card")
    info.add_argument("name", help="a zoo name or a nequip.net:group/name:version id")
    info.set_defaults(run=models_info)
    fetch = actions.add_parser("fetch", help="download remote models into the cache")
    fetch.add_argument(
        "names", nargs="+", metavar="NAME", help="zoo names or nequip.net:group/name:version ids"
    )
    fetch.add_argument(
        "--force", action="store_true", help="download again even if a copy is cached"
    )
    fetch.set_defaults(run=models_fetch)
    verify = actions.add_parser("verify", help="check the sha256 of shipped and cached files")
    verify.add_argument(
        "names", nargs="*", metavar="NAME", help="default: every model (nequip.net ids too)"
    )
    verify.set_defaults(run=models_verify)
    add = actions.add_parser("register", help="add a model file to the registry (maintainers)")
    add.add_argument("checkpoint", help="a file written by allegro_ase.save_model")
    add.add_argument("--name", required=True)
    add.add_argument("--card", required=True, help="model card (Markdown) in the registry folder")
    add.add_argument("--version", default="1")
    add.add_argument("--description", default="")
    add.add_argument("--url", help="download address, for a model not shipped in the package")
    add.add_argument("--registry", help="registry file (default: the one in use)")
    add.set_defaults(run=models_register)


def add_train(commands: argparse._SubParsersAction) -> None:
    """Add ``train CONFIG`` to the subcommands."""
    train = commands.add_parser(
        "train", help="train a model from a YAML config (resumes an interrupted run)"
    )
    train.add_argument("config", help="training config (see allegro_ase.training.config)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar or epoch log")
    train.set_defaults(run=train_command)


def train_command(args: argparse.Namespace) -> int:
    """Train (or resume) the run of ``args.config`` and print the held-out summary."""
    from .training import TrainConfig, train

    summary = train(TrainConfig.from_file(args.config), progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0


def add_export(commands: argparse._SubParsersAction) -> None:
    """Add ``export MODEL OUT --target pair_allegro|pair_nequip|ase`` to the subcommands."""
    export = commands.add_parser(
        "export", help="compile a model for LAMMPS or the reference ASE calculator (.nequip.pt2)"
    )
    export.add_argument("model", help="a model file (allegro_ase.save_model) or a zoo name")
    export.add_argument("out", help="output file, ending in .nequip.pt2")
    export.add_argument(
        "--target",
        required=True,
        choices=list(TARGETS),
        help="pair_allegro: LAMMPS, any number of ranks (Allegro only); pair_nequip: LAMMPS, "
        "one rank; ase: nequip's NequIPCalculator.from_compiled_model",
    )
    export.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    export.add_argument(
        "--no-check", action="store_true", help="skip comparing the compiled file with eager"
    )
    export.set_defaults(run=export_command)


def export_command(args: argparse.Namespace) -> int:
    """Compile ``args.model`` into ``args.out`` for ``args.target`` and print its metadata."""
    from .io.export import export_metadata, export_model  # imports torch.export lazily

    path = args.model if os.path.isfile(args.model) else zoo.resolve(args.model)
    model = load_model(path)
    start = time.perf_counter()
    try:
        out = export_model(model, args.out, args.target, args.device, check=not args.no_check)
    except ValueError as error:
        print(f"allegro-ase: error: {error}", file=sys.stderr)
        return 1
    print(f"{out} ({args.target}, {args.device}) compiled in {time.perf_counter() - start:.0f} s")
    for key, value in export_metadata(model, args.target).items():
        print(f"  {key}: {value}")
    return 0


COMMANDS = (add_models, add_train, add_export)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every command in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="allegro-ase", description="Allegro interatomic potentials for ASE."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ZooError, CheckpointError) as error:
        print(f"allegro-ase: error: {error}", file=sys.stderr)
        return 1


def models_list(args: argparse.Namespace) -> int:
    """Print one line per model: name, species, r_max, size, source and local copy."""
    entries, published = zoo.list_models(), hub.known_models()
    if not entries and not published:
        print(f"No models in the registry {zoo.registry_path()}.")
        return 0
    rows = [
        [
            entry.name,
            entry.version,
            " ".join(entry.species),
            f"{entry.r_max:g}",
            _human_size(entry.size),
            "shipped" if entry.shipped else "remote",
            "yes" if zoo.local_path(entry).is_file() else "no",
            entry.description,
        ]
        for entry in entries
    ]
    rows += [
        [
            entry.id,
            entry.version,
            f"{entry.num_species} elements",
            "?" if entry.r_max is None else f"{entry.r_max:g}",
            "?" if entry.size is None else f"~{_human_size(entry.size)}",
            "nequip.net",
            "yes" if hub.cached_path(entry.id).is_file() else "no",
            f"{entry.description}; download "
            + ("size unknown" if entry.size is None else f"~{_human_size(entry.size)}"),
        ]
        for entry in published
    ]
    header = ["NAME", "VERSION", "SPECIES", "R_MAX/Å", "SIZE", "SOURCE", "LOCAL", "DESCRIPTION"]
    widths = [max(len(row[k]) for row in [header, *rows]) for k in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def models_info(args: argparse.Namespace) -> int:
    """Print a model's registry entry, its file's metadata (if local) and its card."""
    if hub.is_nequip_net_id(args.name):
        return _nequip_net_info(args.name)
    entry = zoo.get_entry(args.name)
    for key, value in entry.to_dict().items():
        print(f"{key}: {' '.join(value) if key == 'species' else value}")
    path = zoo.local_path(entry)
    if path.is_file():
        metadata, _ = read_metadata(zoo.verify(entry))
        print(f"local file: {path} (sha256 verified)")
        for key in ("architecture", "type_names", "r_max", "model_dtype", "package_version"):
            print(f"  {key}: {metadata[key]}")
        print(f"  config: {json.dumps(metadata['config'], sort_keys=True)}")
    else:
        print(f"local file: none yet (allegro-ase models fetch {entry.name} puts it at {path})")
    card = entry.card_path
    print(f"card: {card}")
    print(f"\n{card.read_text(encoding='utf-8')}" if card.is_file() else "(the card is missing)")
    return 0


def models_fetch(args: argparse.Namespace) -> int:
    """Resolve each model (downloading remote ones) and print its verified local path."""
    for name in args.names:
        if hub.is_nequip_net_id(name):
            path = hub.fetch(name, force=args.force)
        else:
            entry = zoo.get_entry(name)
            if args.force and not entry.shipped and not zoo.is_offline():
                zoo.local_path(entry).unlink(missing_ok=True)
            path = zoo.resolve(name)
        print(f"{name}: {path}")
    return 0


def models_verify(args: argparse.Namespace) -> int:
    """Check the sha256 of each shipped or cached file; 1 if any is missing or differs."""
    if args.names:
        ids = [name for name in args.names if hub.is_nequip_net_id(name)]
        entries = [zoo.get_entry(name) for name in args.names if name not in ids]
    else:
        ids, entries = [entry.id for entry in hub.known_models()], zoo.list_models()
    failed = [entry.name for entry in entries if not _verify_one(entry)]
    failed += [model_id for model_id in ids if not _verify_nequip_net(model_id)]
    if failed:
        print(f"{len(failed)} model(s) failed verification: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _verify_one(entry: ModelEntry) -> bool:
    """Print the verification status of one model; False if its file is missing or differs."""
    cached = entry.shipped or zoo.local_path(entry).is_file()
    return _print_verification(entry.name, cached, lambda: zoo.verify(entry))


def _verify_nequip_net(model_id: str) -> bool:
    """Print the verification status of a nequip.net model; False if its cached file differs."""
    cached = hub.cached_path(model_id).is_file()
    return _print_verification(model_id, cached, lambda: hub.verify_cached(model_id))


def _print_verification(label: str, cached: bool, verify) -> bool:
    """Print ``label: ok (path)``, ``not cached (skipped)`` or ``FAILED: why``; False on failure."""
    if not cached:
        print(f"{label}: not cached (skipped)")
        return True
    try:
        path = verify()
    except ZooError as error:
        print(f"{label}: FAILED: {error}")
        return False
    print(f"{label}: ok ({path})")
    return True


def _nequip_net_info(model_id: str) -> int:
    """Print the registry entry of a nequip.net model (if any) and its cached file's record."""
    mid = hub.parse_model_id(model_id)
    entry = {entry.id: entry for entry in hub.known_models()}.get(str(mid))
    if entry is None:
        print(f"id: {mid} (not in the registry {zoo.registry_path()})")
    else:
        for key in ("id", "architecture", "description", "num_species", "r_max", "license"):
            print(f"{key}: {getattr(entry, key)}")
        print(f"size: {'unknown' if entry.size is None else '~' + _human_size(entry.size)}")
        print(f"sha256: {entry.sha256 or 'none published (recorded at the first download)'}")
        print("citation:" + "".join(f"\n  - {reference}" for reference in entry.citation))
    print(f"page: {hub.web_page(mid)}")
    path = hub.cached_path(mid)
    if path.is_file():
        hub.verify_cached(mid)
        record = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
        print(f"local file: {path} (sha256 {record['sha256']} verified)")
        print(f"  downloaded: {record.get('downloaded_at')} from {record.get('download_url')}")
    else:
        print(f"local file: none yet (allegro-ase models fetch {mid} puts it at {path})")
    return 0


def models_register(args: argparse.Namespace) -> int:
    """Write the registry entry of a model file and print it."""
    registry = args.registry or zoo.registry_path()
    entry = register(
        args.checkpoint,
        args.name,
        args.card,
        version=args.version,
        description=args.description,
        url=args.url,
        registry=registry,
    )
    print(json.dumps(entry.to_dict(), indent=2))
    print(f"written to {registry}")
    return 0


def _human_size(size: int) -> str:
    """Format a size in bytes with a decimal unit (B, kB, MB, GB)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
