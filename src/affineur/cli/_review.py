"""Reviewing a lock change: ``affineur diff``, ``why``, ``tree`` and ``graph``.

Each command is a thin layer over a pure module (lock diff, explain, render): it
finds the locks, calls the logic, prints text or JSON, and raises
:class:`AffineurError` for ``cli.main`` to print.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from affineur.cli._options import AddCommand, json_format, lock_choice
from affineur.cli._output import emit, emit_json
from affineur.cli._revisions import locks_at
from affineur.cli._select import LockId, context, package_in
from affineur.errors import AffineurError
from affineur.graph import ROOT, Graph

__all__ = ["register"]

EXIT_SAME = 0
EXIT_CHANGED = 1


def _one(args: argparse.Namespace) -> tuple[Path, LockId, Graph]:
    root, names = context(args)
    lock = names.select_one(args.collection, args.variant)
    return root, lock, names.graph(lock)


def _edge_json(source: str, edge: Any) -> dict[str, str]:
    return {"from": source, "key": edge.key, "req_type": edge.req_type, "req": edge.req}


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

    root, _checkout = context(args)
    old = locks_at(root, args.old or "HEAD")
    new = locks_at(root, args.new)
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
    _root, names = context(args)
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


def register(add: AddCommand) -> None:
    """Add ``diff``, ``why``, ``tree`` and ``graph`` to the ``affineur`` parser."""
    raw = argparse.RawDescriptionHelpFormatter

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
    json_format(p, "markdown")
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
    lock_choice(p)
    json_format(p)
    p.set_defaults(func=cmd_why)

    p = add("tree", "a lock as a tree (build edges marked)")
    lock_choice(p)
    p.add_argument("--edges", choices=["all", "install"], default="all")
    json_format(p)
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
    lock_choice(p)
    p.set_defaults(func=cmd_graph)
