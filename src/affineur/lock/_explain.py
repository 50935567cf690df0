"""Why a package is in a lock, and the lock as a tree.

Build tools reach a lock through build edges that nobody wrote by hand, so
"why is Cython here?" needs the whole chain: which top-level requirement pulled
in which package whose build needed it. Pure: a graph in, paths and lines out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from affineur.config import did_you_mean
from affineur.errors import AffineurError
from affineur.graph import BUILD_REQ_TYPES, ROOT, Edge, Graph, NodeKey, install_closure

__all__ = [
    "MAX_PATHS",
    "Duplicate",
    "WhyPath",
    "duplicates",
    "format_path",
    "tree_data",
    "tree_lines",
    "why",
]

MAX_PATHS = 200
"""Paths through a big build graph grow combinatorially; past this many the
answer is "everywhere", and the first ones show the pattern."""


@dataclass(frozen=True)
class WhyPath:
    """Edges from the root: the first is a top-level edge, the last reaches the package."""

    edges: tuple[Edge, ...]


def _reaching(graph: Graph, targets: set[NodeKey]) -> set[NodeKey]:
    """Nodes with a path to a target: the search below never walks a dead end."""
    parents: dict[NodeKey, list[NodeKey]] = {}
    for key, node in graph.nodes.items():
        for e in node.edges:
            parents.setdefault(e.key, []).append(key)
    seen = set(targets)
    stack = list(targets)
    while stack:
        for parent in parents.get(stack.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def why(graph: Graph, name: str, *, limit: int = MAX_PATHS) -> tuple[list[WhyPath], bool]:
    """Every cycle-free path from a top-level requirement to any version of ``name``.

    Returns the paths (shortest first) and whether ``limit`` cut the list short.
    """
    canonical = canonicalize_name(name)
    targets = {k for k, n in graph.nodes.items() if n.name == canonical}
    if not targets:
        known = {n.name for n in graph.nodes.values()}
        raise AffineurError(
            f"{canonical} is not in the lock of {graph.collection}/{graph.variant}",
            hint=did_you_mean(canonical, known),
            package=canonical,
        )
    useful = _reaching(graph, targets)
    found: list[WhyPath] = []
    truncated = False

    def walk(path: list[Edge], on_path: set[NodeKey]) -> Iterator[WhyPath]:
        key = path[-1].key
        if key in targets:
            yield WhyPath(tuple(path))
        for e in graph.nodes[key].edges:
            if e.key in useful and e.key not in on_path:
                yield from walk([*path, e], on_path | {e.key})

    for top in sorted(graph.toplevel):
        if top.key not in useful:
            continue
        for p in walk([top], {top.key}):
            if len(found) >= limit:
                truncated = True
                break
            found.append(p)
        if truncated:
            break
    found.sort(key=lambda p: (len(p.edges), [(e.key, e.req_type) for e in p.edges]))
    return found, truncated


def format_path(path: WhyPath) -> str:
    """``requests==2.32.3 ==install==> urllib3==2.2.1 ==build-system==> hatchling==1.25.0``"""
    first, *rest = path.edges
    text = f"{first.key} (top-level: {first.req})"
    for e in rest:
        text += f" =={e.req_type}==> {e.key}"
    return text


def tree_lines(graph: Graph, *, build: bool = True) -> list[str]:
    """The lock as an indented tree, each subtree printed once.

    A package already shown is marked ``(*)`` instead of expanded again, which
    keeps the output linear in the lock size and makes cycles harmless; a
    requirement back to a package on the current path is marked ``(cycle)``.
    Build edges carry their type in brackets; install edges are unmarked.
    """
    lines = [f"{graph.collection}/{graph.variant}"]
    shown: set[NodeKey] = set()

    def edges_of(key: NodeKey) -> list[Edge]:
        edges = graph.nodes[key].edges
        if not build:
            edges = tuple(e for e in edges if e.req_type not in BUILD_REQ_TYPES)
        # install edges first: they are what a user of the wheels gets
        return sorted(edges, key=lambda e: (e.req_type in BUILD_REQ_TYPES, e.req_type, e.key))

    # An explicit stack instead of recursion: build chains can be deep.
    stack: list[tuple[Edge, int, frozenset[NodeKey]]] = [
        (e, 1, frozenset()) for e in sorted(graph.toplevel, reverse=True)
    ]
    while stack:
        edge, depth, path = stack.pop()
        mark = f"[{edge.req_type}] " if edge.req_type in BUILD_REQ_TYPES else ""
        line = f"{'  ' * depth}{mark}{edge.key}"
        if edge.key in path:
            lines.append(f"{line} (cycle)")
            continue
        children = edges_of(edge.key)
        if edge.key in shown and children:
            lines.append(f"{line} (*)")
            continue
        lines.append(line)
        shown.add(edge.key)
        inner = path | {edge.key}
        stack.extend((child, depth + 1, inner) for child in reversed(children))
    return lines


@dataclass(frozen=True)
class Duplicate:
    """One name locked at several versions: each version and the edges that require it."""

    name: str
    versions: tuple[tuple[str, tuple[tuple[NodeKey, Edge], ...]], ...]
    """(version, ((requiring node, edge), ...)); the root is the node ``""``."""
    installed: str | None
    """The version in the install closure, if any (only build environments hold the others)."""


def duplicates(graph: Graph) -> list[Duplicate]:
    """Every name the lock holds at more than one version, with what forces each.

    Build environments are resolved one per package, so two packages whose build
    requirements disagree (``setuptools<70`` and ``setuptools>=70.1``) each get
    their own version; the requiring edges show which requirement did it.
    """
    by_name: dict[str, list[NodeKey]] = {}
    for key, node in graph.nodes.items():
        by_name.setdefault(node.name, []).append(key)
    required: dict[NodeKey, list[tuple[NodeKey, Edge]]] = {}
    for e in graph.toplevel:
        required.setdefault(e.key, []).append((ROOT, e))
    for key, node in graph.nodes.items():
        for e in node.edges:
            required.setdefault(e.key, []).append((key, e))
    installed = {graph.nodes[k].name: graph.nodes[k].version for k in install_closure(graph)}
    out = []
    for name, keys in sorted(by_name.items()):
        if len(keys) < 2:
            continue
        versions = tuple(
            (graph.nodes[k].version, tuple(sorted(required.get(k, []))))
            for k in sorted(keys, key=lambda k: _version_key(graph.nodes[k].version))
        )
        out.append(Duplicate(name, versions, installed.get(name)))
    return out


def _version_key(text: str) -> tuple[int, object]:
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (0, text)


def tree_data(graph: Graph, *, build: bool = True) -> list[dict[str, object]]:
    """:func:`tree_lines` as nested data: each package expanded once, later ``"seen": true``."""
    shown: set[NodeKey] = set()

    def edges_of(key: NodeKey) -> list[Edge]:
        edges = graph.nodes[key].edges
        if not build:
            edges = tuple(e for e in edges if e.req_type not in BUILD_REQ_TYPES)
        return sorted(edges, key=lambda e: (e.req_type in BUILD_REQ_TYPES, e.req_type, e.key))

    def item(edge: Edge) -> dict[str, object]:
        node = graph.nodes[edge.key]
        return {
            "key": edge.key,
            "name": node.name,
            "version": node.version,
            "req_type": edge.req_type,
            "req": edge.req,
        }

    root: list[dict[str, object]] = []
    # Explicit stack (deep build chains); each entry fills its parent's children list.
    stack: list[tuple[Edge, list[dict[str, object]], frozenset[NodeKey]]] = [
        (e, root, frozenset()) for e in sorted(graph.toplevel, reverse=True)
    ]
    while stack:
        edge, into, path = stack.pop()
        entry = item(edge)
        into.append(entry)
        if edge.key in path:
            entry["cycle"] = True
            continue
        children = edges_of(edge.key)
        if edge.key in shown and children:
            entry["seen"] = True
            continue
        shown.add(edge.key)
        kids: list[dict[str, object]] = []
        entry["children"] = kids
        stack.extend((child, kids, path | {edge.key}) for child in reversed(children))
    return root
