"""The ``affineur`` command: the parser, the lock and settings commands, and error printing.

Only :func:`main` prints an :class:`~affineur.errors.AffineurError`, through
:func:`~affineur.errors.error_text` (one ``error:`` line, the causes indented
under it, an optional ``hint:`` line), and exits with status 2. Commands raise;
they never print an error themselves.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from affineur.cli._select import Names, context, unknown
from affineur.errors import AffineurError, error_text

if TYPE_CHECKING:
    from affineur.config import Project, Variant

__all__ = ["build_parser", "main"]

EXIT_ERROR = 2

DESCRIPTION = """\
affineur builds a whole Python dependency tree from source into wheels, from the
collections, variants and overrides of a repository, and pins it all in lock/.
'doit' locks and builds; these commands start a repository, edit and inspect it,
and hand the results to pip."""

EPILOG = """\
a typical day:
  affineur init myrepo          start a repository (then: cd myrepo)
  affineur add 'requests>=2'    add a requirement to the collection
  affineur lock                 resolve it into lock/ (doit does this too)
  doit -n 2                     build every package; publish dist/<collection>/<variant>/simple/
  affineur diff / why / check   review what a change does, in a pull request and in CI
  affineur serve                offer the built wheels to pip over HTTP

Every command finds the repository from the current folder upward (or --root).
'affineur COMMAND --help' tells more."""


def _version() -> str:
    try:
        return dist_version("affineur")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


# --- lock -------------------------------------------------------------------------------


def _upgrade_names(wanted_names: Sequence[str], root: Path, names: Names) -> frozenset[str]:
    """The packages ``--upgrade`` names, each one that exists in a lock or a collection."""
    if not wanted_names:
        return frozenset()
    from packaging.requirements import InvalidRequirement, Requirement

    from affineur.config import load_project

    known: set[str] = set()
    for lock in names.locks:
        known |= {n.name for n in names.graph(lock).nodes.values()}
    for collection in load_project(root).collections.values():
        for text in collection.requirements:
            try:
                known.add(canonicalize_name(Requirement(text).name))
            except InvalidRequirement:
                continue
    wanted = frozenset(canonicalize_name(n) for n in wanted_names)
    for name in sorted(wanted - known):
        raise unknown("package", name, known, where=" to upgrade")
    return wanted


def cmd_lock(args: argparse.Namespace) -> int:
    from affineur.progress import StreamReporter
    from affineur.run import hold_checkout
    from affineur.run import open_checkout as open_stages

    root, names = context(args)
    for name in args.collection:
        names.check_collection(name)
    for name in args.variant:
        names.check_variant(name)
    pairs = [
        pair
        for pair in names.select(locked=False)
        if (not args.collection or pair[0] in args.collection)
        and (not args.variant or pair[1] in args.variant)
    ]
    if not pairs:
        raise AffineurError(
            "no collection is built for the chosen variants",
            hint="see which variants each collection lists in collections/*.toml",
        )
    upgrade: frozenset[str] | bool = (
        True if args.upgrade_all else _upgrade_names(args.upgrade, root, names)
    )
    stages = open_stages(root, reporter=StreamReporter(verbose=args.verbose))
    # A running doit reads and may re-lock the same files.
    with hold_checkout(root):
        for collection, variant in pairs:
            c = stages.project.collections[collection]
            v = stages.project.variants[variant]
            if not upgrade and not args.force and stages.is_fresh(c, v):
                print(f"{collection}/{variant}: up to date")
                continue
            path = stages.lock(collection, variant, upgrade=upgrade)
            print(path.relative_to(root))
    return 0


# --- settings ---------------------------------------------------------------------------


def _settings_entries(args: argparse.Namespace) -> tuple[list[dict[str, Any]], Project]:
    from affineur.config import effective_settings, find_patches, load_project

    root, names = context(args)
    names.check_variant(args.variant)
    project = load_project(root)
    variants = [args.variant] if args.variant else sorted(project.variants)
    name = canonicalize_name(args.name)
    if args.version is not None:
        try:
            Version(args.version)
        except InvalidVersion:
            raise AffineurError(f"{args.version!r} is not a valid version") from None

    locked: dict[str, set[str]] = {}  # variant -> versions locked for it
    known: set[str] = set(project.overrides)
    for collection, variant in names.locks:
        graph = names.graph((collection, variant))
        known |= {n.name for n in graph.nodes.values()}
        locked.setdefault(variant, set()).update(graph.versions_of(name))
    if name not in known:
        raise unknown("package", args.name, known, where=" (not in any lock or override)")

    override = project.override_for(name)
    entries = []
    for variant in variants:
        versions: list[str | None] = [args.version] if args.version else []
        if not versions:
            versions = [*sorted(locked.get(variant, ()), key=Version)] or [None]
        for version in versions:
            settings = effective_settings(
                variant=project.variants[variant], override=override, version=version
            )
            patches = find_patches(root, name, version, variant) if version else []
            entries.append(
                {
                    "package": name,
                    "version": version,
                    "variant": variant,
                    "variant_file": project.variants[variant].file.relative_to(root).as_posix(),
                    "override_file": override.file.relative_to(root).as_posix()
                    if override
                    else None,
                    "patches": [p.relative_to(root).as_posix() for p in patches],
                    "settings": settings.to_json(),
                }
            )
    return entries, project


def _python_line(variant: Variant) -> str:
    """The interpreter the variant builds with here, or why there is none."""
    from affineur.pep517 import interpreter_of

    try:
        found = interpreter_of(variant)
    except AffineurError as exc:
        return exc.message
    return f"{found.key()} ({found.executable})"


def cmd_settings(args: argparse.Namespace) -> int:
    from affineur.cli._output import emit_json
    from affineur.config import DEFAULT_BUILD_TIMEOUT

    entries, project = _settings_entries(args)
    if args.format == "json":
        emit_json(entries, "settings")
        return 0
    for i, e in enumerate(entries):
        if i:
            print()
        version = e["version"] or "(not locked: settings for version ranges not applied)"
        print(f"{e['package']} {version}, variant {e['variant']} ({e['variant_file']})")
        print(f"  override: {e['override_file'] or 'none'}")
        print(f"  patches:  {', '.join(e['patches']) or 'none'}")
        changed = {k: v for k, v in e["settings"].items() if v not in (None, False, [], {})}
        changed.pop("build_requires", None)
        if any(e["settings"]["build_requires"].values()):
            changed["build_requires"] = e["settings"]["build_requires"]
        for key, value in sorted(changed.items()):
            print(f"  {key}: {json.dumps(value, sort_keys=True)}")
        if e["settings"]["timeout"] is None:
            print(f"  timeout: {DEFAULT_BUILD_TIMEOUT:g} (the default, in seconds)")
        print(f"  python: {_python_line(project.variants[e['variant']])}")
        print("  (every other setting at its default; --format json shows all)")
    return 0


# --- the parser -------------------------------------------------------------------------


def _common(suppress: bool) -> argparse.ArgumentParser:
    """--root and -v, accepted before or after the command name."""
    default = argparse.SUPPRESS if suppress else None
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root",
        metavar="DIR",
        default=default,
        help="the repository (default: found from the current folder upward)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="say more while working",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="affineur",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"affineur {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common(suppress=True)

    def add(name: str, help: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("description", help[0].upper() + help[1:] + ".")
        return sub.add_parser(name, help=help, parents=[common], **kwargs)

    from affineur.cli._init import register as register_init

    register_init(add)

    p = add("lock", "resolve collections into lock/ (stage 1; needs the index)")
    p.add_argument(
        "--collection", action="append", default=[], metavar="NAME", help="only this collection"
    )
    p.add_argument(
        "--variant", action="append", default=[], metavar="NAME", help="only this variant"
    )
    p.add_argument(
        "--upgrade",
        action="append",
        default=[],
        metavar="NAME",
        help="let NAME move to its newest allowed version; the others stay",
    )
    p.add_argument("--upgrade-all", action="store_true", help="let every package move")
    p.add_argument("--force", action="store_true", help="re-lock even if the lock is fresh")
    p.set_defaults(func=cmd_lock)

    p = add(
        "settings",
        "the effective build settings of a package",
        description=(
            "Print the settings a package is built with: the variant's defaults, its\n"
            "overrides file, the blocks for its version and variant, and its patches.\n"
            "Without --version, each version in the locks is shown; without --variant,\n"
            "each variant."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="the package (as in the lock or overrides/<name>.yaml)")
    p.add_argument("--variant", metavar="NAME", help="only this variant (default: each)")
    p.add_argument(
        "--version", metavar="X", help="as if locked at this version (default: the locked ones)"
    )
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_settings)

    from affineur.cli import (
        _check,
        _collections,
        _commands,
        _evidence,
        _export,
        _fromager,
        _review,
        _upkeep,
    )

    # One module per command group, added in the order 'affineur --help' lists them.
    for group in (_collections, _review, _export, _check, _commands, _fromager, _upkeep, _evidence):
        group.register(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AffineurError as exc:
        print(error_text(exc), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `affineur tree | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
