"""Commands about what was built and what could be: outdated, log, serve."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from affineur.cli._output import emit_json
from affineur.cli._select import LockId, Names, open_names, package_in, unknown
from affineur.errors import AffineurError
from affineur.graph import Graph, install_closure, node_key

__all__ = ["Outdated", "newest_versions", "register"]

_FETCHERS = 8
"""Index pages fetched at once: a lock of a few hundred packages answers in seconds."""


# --- outdated ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outdated:
    name: str
    locked: tuple[str, ...]
    latest: str
    scope: str
    """``install`` (users get it) or ``build`` (only in build environments)."""
    locks: tuple[str, ...]


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def newest_versions(
    names: Iterable[str], client: Any, *, python: Version, prereleases: bool
) -> dict[str, tuple[Version | None, str | None]]:
    """Each name's newest usable release on the index: (version, None) or (None, error).

    Usable as a lock would use it: not yanked, allowed on the target Python,
    final unless pre-releases are asked for, with an sdist (we build from source).
    """
    from affineur.index import usable_files

    def newest(name: str) -> tuple[Version | None, str | None]:
        try:
            files = client.project_files(name)
        except AffineurError as exc:
            return None, exc.one_line()
        usable = usable_files(
            [f for f in files if f.kind == "sdist"],
            python_version=python,
            allow_prereleases=prereleases,
        )
        versions = [f.version for f in usable if f.version is not None]
        return (max(versions) if versions else None), None

    unique = sorted(set(names))
    with ThreadPoolExecutor(max_workers=_FETCHERS) as pool:
        return dict(zip(unique, pool.map(newest, unique), strict=True))


def _outdated(root: Path, checkout: Names, locks: list[LockId]) -> tuple[list[Outdated], list[str]]:
    from affineur.config import default_index_url, load_project
    from affineur.index import IndexClient

    project = load_project(root)
    graphs = checkout.graphs(locks)
    # One client per distinct index list, so a page is fetched once for all locks using it.
    by_indexes: dict[tuple[str, ...], list[LockId]] = {}
    for lock in locks:
        variant = project.variants.get(lock[1])
        if variant is None:
            raise AffineurError(f"the lock of {lock[0]}/{lock[1]} has no variants/{lock[1]}.yaml")
        urls = tuple(variant.indexes) or (default_index_url(),)
        by_indexes.setdefault(urls, []).append(lock)

    locked: dict[str, set[str]] = {}
    scope: dict[str, str] = {}
    where: dict[str, set[str]] = {}
    newest: dict[str, Version | None] = {}
    problems: list[str] = []
    for urls, group in by_indexes.items():
        client = IndexClient(urls)
        names: set[str] = set()
        prereleases = False
        python = Version("3")
        for lock in group:
            graph = graphs[lock]
            collection = project.collections.get(lock[0])
            prereleases |= bool(collection and collection.prereleases)
            python = Version(graph.target.get("python_full_version", "3"))
            installed = {graph.nodes[k].name for k in install_closure(graph)}
            for node in graph.nodes.values():
                names.add(node.name)
                locked.setdefault(node.name, set()).add(node.version)
                where.setdefault(node.name, set()).add(f"{lock[0]}/{lock[1]}")
                if node.name in installed or scope.get(node.name) == "install":
                    scope[node.name] = "install"
                else:
                    scope.setdefault(node.name, "build")
        for name, (version, error) in newest_versions(
            names, client, python=python, prereleases=prereleases
        ).items():
            if error:
                problems.append(f"{name}: {error}")
            best = newest.get(name)
            if version is not None and (best is None or version > best):
                newest[name] = version
    out = []
    for name in sorted(locked):
        latest = newest.get(name)
        versions = [v for v in (_version(t) for t in locked[name]) if v is not None]
        if latest is None or not versions or latest <= max(versions):
            continue
        out.append(
            Outdated(
                name,
                tuple(sorted(locked[name], key=lambda t: _version(t) or Version("0"))),
                str(latest),
                scope[name],
                tuple(sorted(where[name])),
            )
        )
    return out, problems


def cmd_outdated(args: argparse.Namespace) -> int:
    root, names = open_names(args.root)
    locks = names.select(args.collection, args.variant)
    rows, problems = _outdated(root, names, locks)
    if args.scope != "all":
        rows = [r for r in rows if r.scope == args.scope]
    if args.format == "json":
        emit_json(
            {
                "packages": [
                    {
                        "name": r.name,
                        "locked": list(r.locked),
                        "latest": r.latest,
                        "scope": r.scope,
                        "locks": list(r.locks),
                    }
                    for r in rows
                ],
                "problems": problems,
            },
            "outdated",
        )
    else:
        _print_table(rows)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def _print_table(rows: list[Outdated]) -> None:
    if not rows:
        print("every locked package is at its newest release")
        return
    header = ("package", "locked", "latest", "scope", "locks")
    table = [header] + [
        (r.name, ", ".join(r.locked), r.latest, r.scope, ", ".join(r.locks)) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    print(
        f"\n{len(rows)} package(s) have newer releases; "
        "'affineur lock --upgrade NAME' moves one, then 'affineur diff' shows the change"
    )


# --- log --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LogChoice:
    collection: str
    variant: str
    name: str
    version: str


def _log_target(args: argparse.Namespace, names: Names) -> tuple[_LogChoice, Graph]:
    name, _, version = args.name.partition("==")
    version = version or args.version
    graphs = names.graphs(names.select(args.collection, args.variant))
    canonical = package_in(name, graphs)
    found: dict[tuple[str, str], tuple[_LogChoice, Graph]] = {}
    for (collection, variant), graph in sorted(graphs.items()):
        for v in graph.versions_of(canonical):
            # One build per variant and version: the first collection holding it stands for all.
            found.setdefault((variant, v), (_LogChoice(collection, variant, canonical, v), graph))
    if version is not None:
        versions = sorted({v for _, v in found})
        if version not in versions:
            raise unknown(f"version of {canonical}", version, versions)
        found = {k: c for k, c in found.items() if k[1] == version}
    if len(found) > 1:
        listing = ", ".join(f"{canonical}=={v} ({variant})" for variant, v in sorted(found))
        variants = {variant for variant, _ in found}
        how = "--variant" if len({v for _, v in found}) == 1 else f"{canonical}==VERSION"
        if len(variants) > 1 and how != "--variant":
            how += " and --variant"
        raise AffineurError(f"several builds of {canonical}: {listing}; choose with {how}")
    return next(iter(found.values()))


def _log_files(root: Path, choice: _LogChoice) -> list[tuple[Path, str]]:
    """The build's logs that exist: the cached build's and the last failure's."""
    from affineur.progress import NullReporter
    from affineur.run import open_checkout as open_stages

    stages = open_stages(root, reporter=NullReporter())
    candidates: list[tuple[Path, str]] = []
    for lv in stages.locked:
        if (lv.collection.name, lv.variant.name) != (choice.collection, choice.variant):
            continue
        key = lv.keys[node_key(choice.name, choice.version)]
        entry = stages.cache.get(key)
        if entry is not None:
            candidates.append((entry.log, "built"))
    failed = root / "build" / "logs" / choice.variant / f"{choice.name}-{choice.version}.log"
    candidates.append((failed, "failed"))
    return [(p, kind) for p, kind in candidates if p.is_file()]


def cmd_log(args: argparse.Namespace) -> int:
    root, names = open_names(args.root)
    choice, graph = _log_target(args, names)
    node = graph.nodes[node_key(choice.name, choice.version)]
    logs = _log_files(root, choice)
    label = f"{choice.name}=={choice.version} ({choice.variant})"
    if not logs:
        if node.prebuilt:
            raise AffineurError(f"{label} is taken as an upstream wheel (prebuilt): no build log")
        raise AffineurError(
            f"{label} has no build log yet: it was not built",
            hint=f"'doit build:{choice.variant}:{choice.name}-{choice.version}' builds it",
        )
    # The newest is the last build's: a failure after a success, or a success after a fix.
    path, outcome = max(logs, key=lambda item: item[0].stat().st_mtime)
    when = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    shown = path.relative_to(root) if path.is_relative_to(root) else path
    if args.path:
        print(path)
        return 0
    text = path.read_text(encoding="utf-8", errors="replace")
    if args.format == "json":
        emit_json(
            {
                "package": choice.name,
                "version": choice.version,
                "variant": choice.variant,
                "outcome": outcome,
                "path": str(shown),
                "modified": when,
                "text": text,
            },
            "log",
        )
        return 0
    what = "the last build succeeded" if outcome == "built" else "the last build failed"
    print(f"# {label}: {what}; {shown} ({when})", file=sys.stderr)
    sys.stdout.write(text)
    return 0


# --- serve ------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from affineur.cli._serve import Served, make_server, published

    root, names = open_names(args.root)
    names.check_collection(args.collection)
    names.check_variant(args.variant)
    indexes = published(root)
    if not indexes:
        raise AffineurError(
            "nothing is published yet: dist/ holds no index",
            hint="run doit first; it publishes dist/<collection>/<variant>/simple/",
        )
    chosen = [
        lid
        for lid in indexes
        if (args.collection is None or lid[0] == args.collection)
        and (args.variant is None or lid[1] == args.variant)
    ]
    if not chosen:
        have = ", ".join(f"{c}/{v}" for c, v in sorted(indexes))
        raise AffineurError(f"no published index matches; published: {have}")
    default = chosen[0] if len(chosen) == 1 else None
    served = Served({lid: indexes[lid] for lid in chosen}, default)
    server = make_server(served, host=args.host, port=args.port, quiet=not args.verbose)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    shown_host = f"[{host}]" if ":" in host else host
    base = f"http://{shown_host}:{port}"
    print(f"serving {len(chosen)} index(es) from {root / 'dist'} (read-only), Ctrl-C stops")
    for c, v in sorted(chosen):
        print(f"  {c}/{v}: {base}/{c}/{v}/simple/")
    if default is not None:
        print(f"  pip install --index-url {base}/simple/ NAME")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0


# --- the parser -------------------------------------------------------------------------


def register(add: Any) -> None:
    raw = argparse.RawDescriptionHelpFormatter

    def lock_choice(p: argparse.ArgumentParser) -> None:
        p.add_argument("--collection", metavar="NAME", help="only this collection")
        p.add_argument("--variant", metavar="NAME", help="only this variant")

    p = add(
        "outdated",
        "locked packages that have newer releases on the index",
        formatter_class=raw,
        description=(
            "Ask the index of each variant for the newest release of every locked\n"
            "package, installed ones and build-only tools alike, as a lock would take it\n"
            "(not yanked, fit for the target Python, with an sdist, final unless the\n"
            "collection allows pre-releases). Needs the network; changes nothing."
        ),
    )
    lock_choice(p)
    p.add_argument(
        "--scope", choices=["all", "install", "build"], default="all", help="default: all"
    )
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_outdated)

    p = add(
        "log",
        "the last build log of a package (or of its failure)",
        formatter_class=raw,
        description=(
            "Print the log of NAME's last build: the cached build's log, or, when the\n"
            "last attempt failed, the failure's (kept in build/logs/<variant>/).\n"
            "NAME may be NAME==VERSION when several versions are locked."
        ),
    )
    p.add_argument("name", metavar="NAME", help="the package, or NAME==VERSION")
    lock_choice(p)
    p.add_argument("--version", metavar="X", help="the locked version (like NAME==X)")
    p.add_argument("--path", action="store_true", help="print only the log file's path")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_log)

    p = add(
        "serve",
        "serve the built indexes over HTTP (PEP 691 JSON and PEP 503 HTML, read-only)",
        formatter_class=raw,
        description=(
            "Serve dist/<collection>/<variant>/ as /<collection>/<variant>/simple/, in\n"
            "JSON or HTML as the client asks. When one index is published (or chosen\n"
            "with --collection/--variant) it is also /simple/. Read-only; binds\n"
            "127.0.0.1 unless --host says otherwise (anyone who reaches it reads every\n"
            "wheel). Logs requests with -v."
        ),
    )
    lock_choice(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="default: 8000; 0 picks a free port")
    p.set_defaults(func=cmd_serve)
