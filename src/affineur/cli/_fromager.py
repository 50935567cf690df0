"""``affineur import-fromager``: start a collection from a fromager build graph.

fromager records no hashes, so this writes the collection (its requirements and
constraints pinning fromager's versions) and leaves the lock to ``affineur lock``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from affineur.cli._options import AddCommand
from affineur.cli._select import context
from affineur.errors import AffineurError

__all__ = ["register"]


def cmd_import_fromager(args: argparse.Namespace) -> int:
    from affineur.config import import_fromager, parse_fromager

    root, names = context(args)
    for variant in args.variant:
        names.check_variant(variant)
    source = Path(args.path)
    try:
        data = json.loads(source.read_bytes())
    except (OSError, ValueError) as exc:
        raise AffineurError(f"cannot read the fromager graph: {exc}", file=str(source)) from None
    graph = parse_fromager(data, file=str(source))
    variants = args.variant or list(names.variants)
    path = import_fromager(root, graph, name=args.collection, variants=variants, source=source.name)
    print(
        f"wrote {path.relative_to(root)}: {len(graph.toplevel)} requirements, "
        f"{len(graph.pins)} pinned to fromager's versions, for {', '.join(variants)}"
    )
    if graph.unpinned:
        print(f"not pinned (fromager installs several versions): {', '.join(graph.unpinned)}")
    if graph.prebuilt:
        print(
            "fromager took these as upstream wheels; to do the same, add "
            f"'prebuilt: true' to overrides/<name>.yaml: {', '.join(graph.prebuilt)}"
        )
    print("fromager records no hashes, so no lock was written: run 'affineur lock' to make it")
    return 0


def register(add: AddCommand) -> None:
    """Add ``import-fromager`` to the ``affineur`` parser."""
    raw = argparse.RawDescriptionHelpFormatter

    p = add(
        "import-fromager",
        "start a collection from a fromager graph.json",
        formatter_class=raw,
        description=(
            "Write collections/NAME.toml from a fromager graph.json: its top-level\n"
            "requirements as written, and constraints pinning the install closure to\n"
            "the versions fromager built. fromager records no hashes and a lock needs\n"
            "them, so no lock is written: 'affineur lock' makes it (same versions)."
        ),
    )
    p.add_argument("path", help="fromager's graph.json")
    p.add_argument("--collection", required=True, metavar="NAME", help="the new collection's name")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME",
        help="build for this variant (default: all)",
    )
    p.set_defaults(func=cmd_import_fromager)
