"""The ``affineur`` command: the operations that do not fit doit's task model.

Only this module turns an :class:`AffineurError` into text: one ``error:`` line,
the causes indented under it, an optional ``hint:`` line, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from affineur.errors import AffineurError
from affineur.progress import StreamReporter

__all__ = ["main"]

EXIT_ERROR = 2


def _root(args: argparse.Namespace) -> Path:
    root = Path(args.root).resolve()
    if not (root / "collections").is_dir():
        raise AffineurError(
            f"{root} has no collections/ folder",
            hint="run affineur in the checkout (or pass --root)",
        )
    return root


def cmd_lock(args: argparse.Namespace) -> int:
    from affineur.lock import lock_is_fresh
    from affineur.run import Engine

    engine = Engine(_root(args), reporter=StreamReporter(verbose=args.verbose))
    upgrade: frozenset[str] | bool = (
        True if args.upgrade_all else frozenset(canonicalize_name(n) for n in args.upgrade)
    )

    for collection, variant in engine.pairs():
        if args.collection and collection.name not in args.collection:
            continue
        if args.variant and variant.name not in args.variant:
            continue
        if not upgrade and not args.force and lock_is_fresh(engine.project, collection, variant):
            engine.reporter.message(f"lock {collection.name}/{variant.name} is up to date")
            continue
        path = engine.lock(collection.name, variant.name, upgrade=upgrade)
        print(path.relative_to(engine.root))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from affineur.config import effective_settings, load_project

    project = load_project(_root(args))
    variant_name = args.variant or sorted(project.variants)[0]
    if variant_name not in project.variants:
        raise AffineurError(
            f"no variant {variant_name!r}", hint=f"variants: {', '.join(sorted(project.variants))}"
        )
    settings = effective_settings(
        variant=project.variants[variant_name],
        override=project.overrides.get(canonicalize_name(args.name)),
        version=args.version,
    )
    print(json.dumps(settings.to_json(), indent=2, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="affineur", description=__doc__)
    parser.add_argument("--root", default=".", help="the checkout (default: the current folder)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("lock", help="lock collections (stage 1)")
    p.add_argument("--collection", action="append", default=[], help="only this collection")
    p.add_argument("--variant", action="append", default=[], help="only this variant")
    p.add_argument(
        "--upgrade",
        action="append",
        default=[],
        metavar="NAME",
        help="let NAME move to its newest allowed version; others stay",
    )
    p.add_argument("--upgrade-all", action="store_true", help="let every package move")
    p.add_argument("--force", action="store_true", help="re-lock even if the lock is fresh")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("settings", help="print the effective settings of a package")
    p.add_argument("name")
    p.add_argument("--variant")
    p.add_argument("--version")
    p.set_defaults(func=cmd_settings)
    from affineur.cli._workflow import register

    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AffineurError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        for cause in exc.causes:
            print(f"  {cause}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
