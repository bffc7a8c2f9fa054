"""``allegro-ase models list|info|fetch|verify|register``: the zoo and nequip.net models.

Zoo names come from the registry (:mod:`allegro_ase.zoo`); the models published on nequip.net
go by their ids (``nequip.net:group/name:version``, :mod:`allegro_ase.nequip_files.hub`).
"""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_output_flags


def add_models(commands: argparse._SubParsersAction) -> None:
    """Add ``models list|info|fetch|verify|register`` to the subcommands."""
    models = commands.add_parser("models", help="list, inspect, fetch and verify pretrained models")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="table of the registry's models")
    listing.set_defaults(run=models_list)
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
    for parser in (listing, info, fetch, verify, add):
        add_output_flags(parser)


def models_list(args: argparse.Namespace) -> int:
    """Print one line per model: name, species, r_max, size, source and local copy."""
    from .. import zoo
    from ..nequip_files import hub

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
    from .. import zoo
    from ..io.checkpoint import read_metadata
    from ..nequip_files import hub

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
    from .. import zoo
    from ..nequip_files import hub

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
    from .. import zoo
    from ..nequip_files import hub

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


def _verify_one(entry) -> bool:
    """Print the verification status of one zoo entry; False if its file is missing or differs."""
    from .. import zoo

    cached = entry.shipped or zoo.local_path(entry).is_file()
    return _print_verification(entry.name, cached, lambda: zoo.verify(entry))


def _verify_nequip_net(model_id: str) -> bool:
    """Print the verification status of a nequip.net model; False if its cached file differs."""
    from ..nequip_files import hub

    cached = hub.cached_path(model_id).is_file()
    return _print_verification(model_id, cached, lambda: hub.verify_cached(model_id))


def _print_verification(label: str, cached: bool, verify) -> bool:
    """Print ``label: ok (path)``, ``not cached (skipped)`` or ``FAILED: why``; False on failure."""
    from ..io.registry import ZooError

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
    from .. import zoo
    from ..nequip_files import hub

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
    from .. import zoo
    from ..io.registry import register

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
