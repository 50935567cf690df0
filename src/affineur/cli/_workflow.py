"""The pull-request workflow commands: edit a collection, review the lock diff, check, export.

Each command is a thin layer over a pure module (lock diff, explain, render,
export, collection edits, check, fromager import): it finds the files, calls the
logic, prints text or JSON, and raises :class:`AffineurError` for ``cli.main`` to
print. Reading locks from git lives here because it is the commands' I/O.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin

from packaging.utils import canonicalize_name

from affineur.cli._output import emit, emit_json
from affineur.cli._select import LockId, Names, open_names, package_in, unknown
from affineur.errors import AffineurError
from affineur.graph import ROOT, Graph

__all__ = ["AddCommand", "register"]

EXIT_SAME = 0
EXIT_CHANGED = 1

AddCommand = Callable[..., argparse.ArgumentParser]
"""``add(name, help, **parser_kwargs)``: a subcommand with the common options."""


def _context(args: argparse.Namespace) -> tuple[Path, Names]:
    return open_names(getattr(args, "root", None))


# --- reading locks from git and folders ---------------------------------------------------


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    except FileNotFoundError:
        raise AffineurError("git is not installed", hint="compare two folders instead") from None


def _git_locks(root: Path, rev: str) -> dict[LockId, Graph]:
    """Every lock/*/*/graph.json tracked at ``rev``, read without touching the work tree."""
    from affineur.lock import LockPaths, parse_lock

    if _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode != 0:
        raise AffineurError(
            f"{rev!r} is neither a folder holding lock/ nor a git revision of {root}",
            hint="pass a commit, branch or tag, or a names folder",
        )
    # Paths print relative to cwd (the project root may be a subfolder of the repository).
    listing = _git(root, "ls-tree", "-r", "--name-only", rev, "--", "lock/")
    locks = {}
    for name in sorted(listing.stdout.decode().splitlines()):
        lock_id = LockPaths.lock_id(name)
        if lock_id is None:
            continue
        shown = _git(root, "show", f"{rev}:./{name}")
        if shown.returncode != 0:
            raise AffineurError(
                f"git show {rev}:{name} failed", causes=(shown.stderr.decode().strip(),)
            )
        locks[lock_id] = parse_lock(shown.stdout, f"{rev}:{name}")
    return locks


def _locks_at(root: Path, spec: str | None) -> dict[LockId, Graph]:
    """None: the work tree; a folder with lock/ or collections/: that folder; else a revision."""
    from affineur.lock import read_locks

    if spec is None:
        return read_locks(root)
    folder = Path(spec)
    if folder.is_dir() and ((folder / "lock").is_dir() or (folder / "collections").is_dir()):
        return read_locks(folder.resolve())
    return _git_locks(root, spec)


def _one(args: argparse.Namespace) -> tuple[Path, LockId, Graph]:
    root, names = _context(args)
    lock = names.select_one(args.collection, args.variant)
    return root, lock, names.graph(lock)


def _edge_json(source: str, edge: Any) -> dict[str, str]:
    return {"from": source, "key": edge.key, "req_type": edge.req_type, "req": edge.req}


# --- editing collections -------------------------------------------------------------------


def _collection_name(names: Names, given: str | None) -> str:
    if given is not None:
        names.check_collection(given)
        if given not in names.collections:
            raise AffineurError(f"collection {given!r} has a lock but no collections/ file")
        return given
    if len(names.collections) == 1:
        return next(iter(names.collections))
    if not names.collections:
        raise AffineurError(
            "the repository has no collection", hint="create collections/<name>.toml"
        )
    raise AffineurError(
        f"several collections ({', '.join(names.collections)}); choose one with --collection"
    )


def cmd_add(args: argparse.Namespace) -> int:
    from affineur.config import add_requirement
    from affineur.run import hold_checkout

    root, names = _context(args)
    collection = _collection_name(names, args.collection)
    key: Literal["requirements", "constraints"] = (
        "constraints" if args.constraint else "requirements"
    )
    with hold_checkout(root):
        edit = add_requirement(root, collection, args.requirement, key=key)
    print(edit.describe())
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from affineur.config import remove_requirement
    from affineur.run import hold_checkout

    root, names = _context(args)
    if args.collection is not None:
        names.check_collection(args.collection)
    key: Literal["requirements", "constraints"] = (
        "constraints" if args.constraint else "requirements"
    )
    present = _named_in(root, key, args.collection)
    if canonicalize_name(args.name) not in present:
        kind = "constraint" if args.constraint else "requirement"
        where = f" of collection {args.collection!r}" if args.collection else ""
        raise unknown(kind, args.name, present, where=where)
    with hold_checkout(root):
        edits = remove_requirement(root, args.name, args.collection, key=key)
    for edit in edits:
        print(edit.describe())
    return 0


def _named_in(root: Path, key: str, collection: str | None) -> set[str]:
    """The names a collection's requirements (or constraints) are on, for choices."""
    import tomllib

    from packaging.requirements import InvalidRequirement, Requirement

    names: set[str] = set()
    for path in sorted((root / "collections").glob("*.toml")):
        if collection is not None and path.stem != collection:
            continue
        try:
            items = tomllib.loads(path.read_text(encoding="utf-8")).get(key, [])
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
            continue
        for text in items if isinstance(items, list) else []:
            try:
                names.add(canonicalize_name(Requirement(str(text)).name))
            except InvalidRequirement:
                continue
    return names


# --- reviewing -----------------------------------------------------------------------------


def _diff_json(diffs: list[Any]) -> list[dict[str, Any]]:
    out = []
    for d in diffs:
        data = dataclasses.asdict(d)
        data["changed"] = d.changed
        for change, raw in zip(d.versions, data["versions"], strict=True):
            raw["kind"] = change.kind
        out.append(data)
    return out


def cmd_diff(args: argparse.Namespace) -> int:
    from affineur.lock import diff_locks, render_markdown, render_text

    root, _checkout = _context(args)
    old = _locks_at(root, args.old or "HEAD")
    new = _locks_at(root, args.new)
    diffs = diff_locks(old, new)
    if args.format == "json":
        emit_json(_diff_json(list(diffs)), "diff")
    else:
        render = render_markdown if args.format == "markdown" else render_text
        sys.stdout.write(render(diffs))
    return EXIT_CHANGED if any(d.changed for d in diffs) else EXIT_SAME


def _why_paths(args: argparse.Namespace, graphs: dict[LockId, Graph]) -> int:
    from affineur.lock import format_path, why

    name = package_in(args.name, graphs)
    results: list[dict[str, Any]] = []
    for (collection, variant), graph in sorted(graphs.items()):
        if not graph.versions_of(name):
            continue
        paths, truncated = why(graph, name)
        results.append(
            {
                "collection": collection,
                "variant": variant,
                "package": name,
                "versions": graph.versions_of(name),
                "paths": [
                    [
                        _edge_json(ROOT if i == 0 else p.edges[i - 1].key, e)
                        for i, e in enumerate(p.edges)
                    ]
                    for p in paths
                ],
                "truncated": truncated,
                "text": [format_path(p) for p in paths],
            }
        )
    if args.format == "json":
        for r in results:
            del r["text"]
        emit_json(results, "why")
        return 0
    for r in results:
        if len(graphs) > 1:
            print(f"{r['collection']}/{r['variant']}:")
        for line in r["text"]:
            print(line)
        if not r["text"]:
            print(f"{name} is in the lock but no top-level requirement reaches it")
        if r["truncated"]:
            print(f"... (first {len(r['text'])} paths shown)")
    return 0


def _why_duplicates(args: argparse.Namespace, graphs: dict[LockId, Graph]) -> int:
    from affineur.lock import duplicates

    results: list[dict[str, Any]] = []
    for (collection, variant), graph in sorted(graphs.items()):
        for dup in duplicates(graph):
            results.append(
                {
                    "collection": collection,
                    "variant": variant,
                    "name": dup.name,
                    "installed": dup.installed,
                    "versions": [
                        {
                            "version": version,
                            "required_by": [_edge_json(src, e) for src, e in edges],
                        }
                        for version, edges in dup.versions
                    ],
                }
            )
    if args.format == "json":
        emit_json(results, "duplicates")
        return 0
    if not results:
        where = ", ".join(f"{c}/{v}" for c, v in sorted(graphs))
        print(f"every package is locked at one version ({where})")
        return 0
    last = None
    for r in results:
        if len(graphs) > 1 and last != (r["collection"], r["variant"]):
            print(f"{r['collection']}/{r['variant']}:")
            last = (r["collection"], r["variant"])
        print(f"{r['name']}: {', '.join(v['version'] for v in r['versions'])}")
        for v in r["versions"]:
            note = " (installed)" if v["version"] == r["installed"] else " (build only)"
            print(f"  {v['version']}{note}, required by:")
            for edge in v["required_by"]:
                source = "the collection" if edge["from"] == ROOT else edge["from"]
                print(f"    {source} [{edge['req_type']}] {edge['req']}")
    return 0


def cmd_why(args: argparse.Namespace) -> int:
    _root, names = _context(args)
    graphs = names.graphs(names.select(args.collection, args.variant))
    if args.duplicates:
        if args.name is not None:
            raise AffineurError("give a package name or --duplicates, not both")
        return _why_duplicates(args, graphs)
    if args.name is None:
        raise AffineurError(
            "which package?", hint="affineur why NAME, or affineur why --duplicates"
        )
    return _why_paths(args, graphs)


def cmd_tree(args: argparse.Namespace) -> int:
    from affineur.lock import tree_data, tree_lines

    _root, (collection, variant), graph = _one(args)
    build = args.edges == "all"
    if args.format == "json":
        emit_json(
            {"collection": collection, "variant": variant, "tree": tree_data(graph, build=build)},
            "tree",
        )
        return 0
    for line in tree_lines(graph, build=build):
        print(line)
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from affineur.cli._render import dot_to_svg, to_dot, to_mermaid

    _root, _lock, graph = _one(args)
    if args.format == "json":
        from affineur.config import validate
        from affineur.graph import dumps

        # The lock itself, whose shape schemas/graph.schema.json already defines.
        text = dumps(graph).decode()
        validate(json.loads(text), "graph", file="affineur graph --format json")
        emit(text, args.output)
        return 0
    if args.format == "mermaid":
        text = to_mermaid(graph, edges=args.edges)
    else:
        text = to_dot(graph, edges=args.edges)
        if args.format == "svg":
            text = dot_to_svg(text)
    emit(text, args.output)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from affineur.lock import check_project

    root, _checkout = _context(args)
    report = check_project(root)
    if args.format == "json":
        emit_json(
            {
                "ok": report.ok,
                "config_problems": list(report.config_problems),
                "locks": [
                    {
                        "collection": s.collection,
                        "variant": s.variant,
                        "state": s.state,
                        "detail": s.detail,
                        "attested": list(s.attested),
                        "host_tools": list(s.host_tools),
                    }
                    for s in report.locks
                ],
                "sandboxes": [
                    {"variant": s.variant, "sandbox": s.sandbox, "detail": s.detail}
                    for s in report.sandboxes
                ],
                "pythons": [
                    {"variant": p.variant, "python": p.python, "executable": p.executable}
                    for p in report.pythons
                ],
            },
            "check",
        )
        return 0 if report.ok else 2
    for line in report.lines():
        print(line)
    if not report.ok:
        problems = report.problems()
        raise AffineurError(
            f"{len(problems)} problem(s) in config or locks",
            causes=tuple(problems),
            hint="fix the config, or re-lock with 'affineur lock' and commit lock/",
        )
    return 0


# --- handing wheels on -----------------------------------------------------------------------


def _pylock_locator(
    args: argparse.Namespace, files: Path
) -> tuple[Callable[..., dict[str, str]], str | None]:
    if args.index_url:
        # Our published index keeps wheels in files/ beside simple/ (see publish.py).
        base = args.index_url.rstrip("/") + "/"
        return (lambda w: {"url": urljoin(base, f"../files/{w.filename}")}), args.index_url
    anchor = Path(args.output).resolve().parent if args.output else Path.cwd()
    return (lambda w: {"path": Path(os.path.relpath(files / w.filename, anchor)).as_posix()}), None


def _constraints_header(collection: str, variant: str, simple: str, upstream: int) -> str:
    origin = (
        "every wheel built by affineur"
        if not upstream
        else f"wheels built by affineur, and {upstream} upstream wheel(s) marked below"
    )
    return (
        f"{collection}/{variant}: the install set, pinned to the sha256 of its wheels ({origin}).\n"
        "Install exactly this set (pip 23.2 and later, or uv):\n"
        f"  pip install --require-hashes --only-binary :all: --index-url {simple} -r FILE\n"
        f"  uv pip install --require-hashes --index-url {simple} -r FILE\n"
        "Without --require-hashes, -c FILE pins what other requirements pull in."
    )


def cmd_export(args: argparse.Namespace) -> int:
    from affineur.build import (
        collect_wheels,
        constraints_text,
        pylock_text,
        target_markers,
        target_requires_python,
    )
    from affineur.progress import StreamReporter
    from affineur.run import open_checkout as open_stages

    root, names = _context(args)
    if args.format == "pylock" and args.output:
        name = Path(args.output).name
        if not (name == "pylock.toml" or (name.startswith("pylock.") and name.endswith(".toml"))):
            raise AffineurError(
                f"PEP 751 lock files are named pylock.toml or pylock.<name>.toml, not {name}",
                hint="-o pylock.toml",
            )
    collection, variant = names.select_one(args.collection, args.variant)
    stages = open_stages(root, reporter=StreamReporter(verbose=getattr(args, "verbose", False)))
    lv = stages.locked_variant(collection, variant)
    wheels = collect_wheels(lv.graph, lv.keys, stages.cache)
    dist = root / "dist" / collection / variant
    if args.format == "constraints":
        simple = args.index_url or (dist / "simple").as_uri()
        upstream = sum(1 for w in wheels if w.upstream)
        header = _constraints_header(collection, variant, simple, upstream)
        text = constraints_text(wheels, header=header)
    else:
        locate, index = _pylock_locator(args, dist / "files")
        text = pylock_text(
            wheels,
            locate=locate,
            environment=target_markers(lv.graph.target),
            index=index,
            requires_python=target_requires_python(lv.graph.target),
        )
    emit(text, args.output)
    return 0


def cmd_import_fromager(args: argparse.Namespace) -> int:
    from affineur.config import import_fromager, parse_fromager

    root, names = _context(args)
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


# --- the parser -----------------------------------------------------------------------------


def _lock_choice(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--collection", metavar="NAME", help="the collection (needed only when several match)"
    )
    p.add_argument("--variant", metavar="NAME", help="the variant (needed only when several match)")


def _json_format(p: argparse.ArgumentParser, *others: str) -> None:
    p.add_argument(
        "--format",
        choices=["text", *others, "json"],
        default="text",
        help="json: one document, described by schemas/cli-*.schema.json",
    )


def register(add: AddCommand) -> None:
    """Add the workflow subcommands to the ``affineur`` parser."""
    raw = argparse.RawDescriptionHelpFormatter

    p = add(
        "add",
        "add (or replace) a requirement or constraint of a collection",
        description=(
            "Add a PEP 508 requirement to collections/<name>.toml, replacing one on the\n"
            "same name; comments and layout are kept. --constraint adds it to the\n"
            "collection's constraints instead (a limit, not something to install).\n"
            "Then 'affineur lock' (or 'doit') re-locks."
        ),
        formatter_class=raw,
    )
    p.add_argument("requirement", help="a PEP 508 requirement, such as 'requests>=2.31'")
    p.add_argument("--collection", metavar="NAME", help="needed only when there are several")
    p.add_argument(
        "--constraint", action="store_true", help="a constraint (limits versions, installs nothing)"
    )
    p.set_defaults(func=cmd_add)

    p = add("remove", "remove a requirement (or constraint) from collections")
    p.add_argument("name")
    p.add_argument("--collection", metavar="NAME", help="only this one (default: every one)")
    p.add_argument("--constraint", action="store_true", help="remove a constraint instead")
    p.set_defaults(func=cmd_remove)

    p = add(
        "diff",
        "what changed between two sets of locks",
        formatter_class=raw,
        description=(
            "Compare locks package by package: added, removed, upgraded and downgraded\n"
            "packages (installed and build-only), changed build environments, and\n"
            "changed hashes under an unchanged name==version.\n\n"
            "OLD and NEW are git revisions or folders holding lock/. Default: OLD is\n"
            "HEAD, NEW is the work tree.\n\n"
            "exit status: 0 no change, 1 changes, 2 error (like git diff --exit-code)"
        ),
    )
    p.add_argument("old", nargs="?", help="revision or folder (default: HEAD)")
    p.add_argument("new", nargs="?", help="revision or folder (default: the work tree)")
    _json_format(p, "markdown")
    p.set_defaults(func=cmd_diff)

    p = add(
        "why",
        "how a package gets into the locks, or which names have several versions",
        formatter_class=raw,
        description=(
            "Every path from a top-level requirement to NAME, through install and\n"
            "build edges, in every lock that matches (all of them by default).\n\n"
            "--duplicates lists each name locked at several versions, and for each\n"
            "version the requirements that force it."
        ),
    )
    p.add_argument("name", nargs="?", help="the package")
    p.add_argument(
        "--duplicates", action="store_true", help="names locked at several versions, and why"
    )
    _lock_choice(p)
    _json_format(p)
    p.set_defaults(func=cmd_why)

    p = add("tree", "a lock as a tree (build edges marked)")
    _lock_choice(p)
    p.add_argument("--edges", choices=["all", "install"], default="all")
    _json_format(p)
    p.set_defaults(func=cmd_tree)

    p = add("graph", "draw a lock (dot, mermaid, or svg with graphviz)")
    p.add_argument(
        "--format",
        choices=["dot", "svg", "mermaid", "json"],
        default="dot",
        help="json: the lock's graph (schemas/graph.schema.json)",
    )
    p.add_argument("--edges", choices=["all", "install", "build"], default="all")
    p.add_argument("-o", "--output", help="write to this file (default: stdout)")
    _lock_choice(p)
    p.set_defaults(func=cmd_graph)

    p = add(
        "export",
        "the built install set as a hashed requirements file or PEP 751 pylock.toml",
        formatter_class=raw,
        description=(
            "Export the install set with the sha256 of the wheels in build/cache.\n\n"
            "constraints (the default): NAME==VERSION --hash=sha256:... lines, for\n"
            "  pip install --require-hashes -r FILE (pip 23.2 and later, uv pip install).\n"
            "pylock: PEP 751; wheels point into dist/<collection>/<variant>/files/ by a\n"
            "  path relative to the output file, or, with --index-url, by URL next to that\n"
            "  index (as doit publishes it: <index>/../files/<wheel>).\n"
            "Upstream wheels (prebuilt, or substituted in test mode) are marked as such."
        ),
    )
    p.add_argument("--format", choices=["constraints", "pylock"], default="constraints")
    _lock_choice(p)
    p.add_argument("--index-url", help="the URL this collection's simple/ index is served at")
    p.add_argument("-o", "--output", help="write to this file (default: stdout)")
    p.set_defaults(func=cmd_export)

    p = add(
        "check",
        "validate config and locks, fail on stale locks (offline, for CI)",
        description="exit status: 0 all good, 2 with every problem listed. Uses no network.",
    )
    _json_format(p)
    p.set_defaults(func=cmd_check)

    from affineur.cli._commands import register as register_more

    register_more(add)

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
