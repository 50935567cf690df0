"""The pull-request workflow commands: edit a collection, review the lock diff, check, export.

Each command is a thin layer over a pure module (lockdiff, explain, render,
export, collections_edit, check, fromager): it finds the files, calls the
logic, prints to stdout, and raises :class:`AffineurError` for ``cli.main`` to
print. Reading locks from git lives here because it is the commands' I/O.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin

from affineur.config import validate
from affineur.errors import AffineurError
from affineur.graph import Graph, from_data
from affineur.lock import LockId

__all__ = ["register"]

EXIT_SAME = 0
EXIT_CHANGED = 1

_LOCK_GLOB = "lock/*/*/graph.json"


def _root(args: argparse.Namespace) -> Path:
    root = Path(getattr(args, "root", ".")).resolve()
    if not (root / "collections").is_dir():
        raise AffineurError(
            f"{root} has no collections/ folder",
            hint="run affineur in the checkout (or pass --root)",
        )
    return root


def _emit(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {output}")


# --- reading locks ------------------------------------------------------------------


def _parse_lock(raw: bytes, where: str) -> Graph:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise AffineurError(f"not valid JSON ({exc})", file=where, stage="lock") from None
    validate(data, "graph", file=where)
    return from_data(data)


def _dir_locks(root: Path) -> dict[LockId, Graph]:
    locks = {}
    for path in sorted(root.glob(_LOCK_GLOB)):
        graph = _parse_lock(path.read_bytes(), str(path))
        locks[(path.parent.parent.name, path.parent.name)] = graph
    return locks


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    except FileNotFoundError:
        raise AffineurError("git is not installed", hint="compare two folders instead") from None


def _git_locks(root: Path, rev: str) -> dict[LockId, Graph]:
    """Every lock/*/*/graph.json tracked at ``rev``, read without touching the work tree."""
    if _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode != 0:
        raise AffineurError(
            f"{rev!r} is neither a folder holding lock/ nor a git revision of {root}",
            hint="pass a commit, branch or tag, or a checkout folder",
        )
    # Paths print relative to cwd (the project root may be a subfolder of the repository).
    listing = _git(root, "ls-tree", "-r", "--name-only", rev, "--", "lock/")
    locks = {}
    for name in sorted(listing.stdout.decode().splitlines()):
        parts = Path(name).parts
        if len(parts) != 4 or parts[0] != "lock" or parts[3] != "graph.json":
            continue
        shown = _git(root, "show", f"{rev}:./{name}")
        if shown.returncode != 0:
            raise AffineurError(
                f"git show {rev}:{name} failed", causes=(shown.stderr.decode().strip(),)
            )
        locks[(parts[1], parts[2])] = _parse_lock(shown.stdout, f"{rev}:{name}")
    return locks


def _locks_at(root: Path, spec: str | None) -> dict[LockId, Graph]:
    """None: the work tree; a folder with lock/ or collections/: that folder; else a revision."""
    if spec is None:
        return _dir_locks(root)
    folder = Path(spec)
    if folder.is_dir() and ((folder / "lock").is_dir() or (folder / "collections").is_dir()):
        return _dir_locks(folder.resolve())
    return _git_locks(root, spec)


def _select(
    locks: dict[LockId, Graph], collection: str | None, variant: str | None
) -> dict[LockId, Graph]:
    chosen = {
        lid: g
        for lid, g in locks.items()
        if (collection is None or lid[0] == collection) and (variant is None or lid[1] == variant)
    }
    if not chosen:
        have = ", ".join(f"{c}/{v}" for c, v in sorted(locks)) or "none"
        raise AffineurError(
            "no lock matches" + (f" {collection or '*'}/{variant or '*'}"),
            hint=f"locks in the checkout: {have}; 'doit lock' makes them",
            stage="lock",
        )
    return chosen


def _one(args: argparse.Namespace) -> Graph:
    chosen = _select(_dir_locks(_root(args)), args.collection, args.variant)
    if len(chosen) > 1:
        raise AffineurError(
            "several locks match",
            hint="choose one with --collection and --variant: "
            + ", ".join(f"{c}/{v}" for c, v in sorted(chosen)),
        )
    return next(iter(chosen.values()))


# --- commands -------------------------------------------------------------------------


def cmd_add(args: argparse.Namespace) -> int:
    from affineur.config import add_requirement

    print(add_requirement(_root(args), args.collection, args.requirement).describe())
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from affineur.config import remove_requirement

    for edit in remove_requirement(_root(args), args.name, args.collection):
        print(edit.describe())
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from affineur.lock import diff_locks, render_markdown, render_text

    root = _root(args)
    old = _locks_at(root, args.old or "HEAD")
    new = _locks_at(root, args.new)
    diffs = diff_locks(old, new)
    render = render_markdown if args.format == "markdown" else render_text
    sys.stdout.write(render(diffs))
    return EXIT_CHANGED if any(d.changed for d in diffs) else EXIT_SAME


def cmd_why(args: argparse.Namespace) -> int:
    from affineur.lock import format_path, why

    chosen = _select(_dir_locks(_root(args)), args.collection, args.variant)
    holders = {lid: g for lid, g in chosen.items() if g.versions_of(args.name)}
    if not holders:
        why(next(iter(chosen.values())), args.name)  # raises, with a did-you-mean hint
    for (collection, variant), graph in sorted(holders.items()):
        paths, truncated = why(graph, args.name)
        if len(chosen) > 1:
            print(f"{collection}/{variant}:")
        for p in paths:
            print(format_path(p))
        if not paths:
            print(f"{args.name} is in the lock but no top-level requirement reaches it")
        if truncated:
            print(f"... (first {len(paths)} paths shown)")
    return 0


def cmd_tree(args: argparse.Namespace) -> int:
    from affineur.lock import tree_lines

    for line in tree_lines(_one(args), build=args.edges == "all"):
        print(line)
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from affineur.cli._render import dot_to_svg, to_dot, to_mermaid

    graph = _one(args)
    if args.format == "mermaid":
        text = to_mermaid(graph, edges=args.edges)
    else:
        text = to_dot(graph, edges=args.edges)
        if args.format == "svg":
            text = dot_to_svg(text)
    _emit(text, args.output)
    return 0


def _pylock_locator(
    args: argparse.Namespace, files: Path
) -> tuple[Callable[..., dict[str, str]], str | None]:
    if args.index_url:
        # Our published index keeps wheels in files/ beside simple/ (see publish.py).
        base = args.index_url.rstrip("/") + "/"
        return (lambda w: {"url": urljoin(base, f"../files/{w.filename}")}), args.index_url
    anchor = Path(args.output).resolve().parent if args.output else Path.cwd()
    return (lambda w: {"path": Path(os.path.relpath(files / w.filename, anchor)).as_posix()}), None


def cmd_export(args: argparse.Namespace) -> int:
    from affineur.build import collect_wheels, constraints_text, pylock_text, target_markers
    from affineur.progress import StreamReporter
    from affineur.run import Engine

    root = _root(args)
    if args.format == "pylock" and args.output:
        name = Path(args.output).name
        if not (name == "pylock.toml" or (name.startswith("pylock.") and name.endswith(".toml"))):
            raise AffineurError(
                f"PEP 751 lock files are named pylock.toml or pylock.<name>.toml, not {name}",
                hint="-o pylock.toml",
            )
    engine = Engine(root, reporter=StreamReporter(verbose=getattr(args, "verbose", False)))
    found = [
        lv
        for lv in engine.locked
        if lv.collection.name == args.collection and lv.variant.name == args.variant
    ]
    if not found:
        raise AffineurError(
            f"no lock of {args.collection}/{args.variant}",
            hint="check the names; 'doit lock' makes the lock, 'doit' builds the wheels",
            stage="lock",
        )
    lv = found[0]
    wheels = collect_wheels(lv.graph, lv.keys, engine.cache)
    header = (
        f"{args.collection}/{args.variant}: wheels built by affineur\n"
        f"pip install --require-hashes -c FILE ... installs only these"
    )
    if args.format == "constraints":
        text = constraints_text(wheels, header=header)
    else:
        files = root / "dist" / args.collection / args.variant / "files"
        locate, index = _pylock_locator(args, files)
        text = pylock_text(
            wheels, locate=locate, environment=target_markers(lv.graph.target), index=index
        )
    _emit(text, args.output)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from affineur.lock import check_project

    report = check_project(_root(args))
    for line in report.lines():
        print(line)
    if not report.ok:
        problems = report.problems()
        raise AffineurError(
            f"{len(problems)} problem(s) in config or locks",
            causes=tuple(problems),
            hint="fix the config, or re-lock with 'doit lock' and commit lock/",
        )
    return 0


def cmd_import_fromager(args: argparse.Namespace) -> int:
    from affineur.config import import_fromager, parse_fromager

    root = _root(args)
    source = Path(args.path)
    try:
        data = json.loads(source.read_bytes())
    except (OSError, ValueError) as exc:
        raise AffineurError(f"cannot read the fromager graph: {exc}", file=str(source)) from None
    graph = parse_fromager(data, file=str(source))
    variants = args.variant or sorted(p.stem for p in (root / "variants").glob("*.yaml"))
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
    print("fromager records no hashes, so no lock was written: run 'doit lock' to make it")
    return 0


# --- the parser -----------------------------------------------------------------------


def _lock_choice(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", help="the collection (needed when several are locked)")
    p.add_argument("--variant", help="the variant (needed when several are locked)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the workflow subcommands to the ``affineur`` parser."""
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("add", help="add (or replace) a requirement of a collection")
    p.add_argument("requirement", help="a PEP 508 requirement; one on the same name is replaced")
    p.add_argument("--collection", required=True)
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("remove", help="remove a requirement from collections")
    p.add_argument("name")
    p.add_argument("--collection", help="only this one (default: every collection that has it)")
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser(
        "diff",
        help="what changed between two sets of locks",
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
    p.add_argument("--format", choices=["text", "markdown"], default="text")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("why", help="every path from a top-level requirement to a package")
    p.add_argument("name")
    _lock_choice(p)
    p.set_defaults(func=cmd_why)

    p = sub.add_parser("tree", help="a lock as a tree (build edges marked)")
    _lock_choice(p)
    p.add_argument("--edges", choices=["all", "install"], default="all")
    p.set_defaults(func=cmd_tree)

    p = sub.add_parser("graph", help="draw a lock (dot, mermaid, or svg with graphviz)")
    p.add_argument("--format", choices=["dot", "svg", "mermaid"], default="dot")
    p.add_argument("--edges", choices=["all", "install", "build"], default="all")
    p.add_argument("-o", "--output", help="write to this file (default: stdout)")
    _lock_choice(p)
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser(
        "export",
        help="the built install set as constraints or PEP 751 pylock.toml",
        formatter_class=raw,
        description=(
            "Export the install closure with the sha256 of the wheels affineur built.\n"
            "pylock wheels point into dist/<collection>/<variant>/files/ by a path\n"
            "relative to the output file, or, with --index-url, by URL next to that\n"
            "index (as 'doit' publishes it: <index>/../files/<wheel>)."
        ),
    )
    p.add_argument("--format", choices=["constraints", "pylock"], default="constraints")
    p.add_argument("--collection", required=True)
    p.add_argument("--variant", required=True)
    p.add_argument("--index-url", help="the published simple/ URL of this collection's wheels")
    p.add_argument("-o", "--output", help="write to this file (default: stdout)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "check",
        help="validate config and locks, fail on stale locks (offline, for CI)",
        description="exit status: 0 all good, 2 with every problem listed. Uses no network.",
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "import-fromager",
        help="start a collection from a fromager graph.json",
        formatter_class=raw,
        description=(
            "Write collections/NAME.toml from a fromager graph.json: its top-level\n"
            "requirements as written, and constraints pinning the install closure to\n"
            "the versions fromager built. fromager records no hashes and a lock needs\n"
            "them, so no lock is written: 'doit lock' makes it (same versions)."
        ),
    )
    p.add_argument("path", help="fromager's graph.json")
    p.add_argument("--collection", required=True, help="the new collection's name")
    p.add_argument(
        "--variant", action="append", default=[], help="build for this variant (default: all)"
    )
    p.set_defaults(func=cmd_import_fromager)
