"""A lock drawn as a graph: Graphviz dot, Mermaid (renders in PR descriptions), svg.

Install edges are solid, build edges dashed and labelled with their type, so a
picture shows at a glance which packages ship and which only build others.
Text output is pure; only :func:`dot_to_svg` runs a program.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from affineur.errors import AffineurError
from affineur.graph import BUILD_REQ_TYPES, ROOT, Edge, Graph, NodeKey

__all__ = ["EdgeFilter", "dot_to_svg", "to_dot", "to_mermaid"]

EdgeFilter = Literal["all", "install", "build"]


@dataclass(frozen=True)
class _Drawn:
    nodes: list[NodeKey]
    edges: list[tuple[NodeKey, Edge]]  # (source, edge); the source ROOT is the collection


def _select(graph: Graph, edges: EdgeFilter) -> _Drawn:
    """The edges of the chosen kind and the nodes they reach from the root.

    Walking from the root (instead of listing every node) keeps ``install``
    from drawing build tools as floating islands. ``build`` keeps the top-level
    and install edges that lead to a package with build edges, since a build
    edge hanging from nowhere explains nothing.
    """
    wanted: Callable[[Edge], bool]
    if edges == "install":

        def wanted(e: Edge) -> bool:
            return e.req_type not in BUILD_REQ_TYPES

    else:

        def wanted(e: Edge) -> bool:
            return True

    drawn: list[tuple[NodeKey, Edge]] = []
    seen: set[NodeKey] = set()
    stack: list[tuple[NodeKey, Edge]] = [(ROOT, e) for e in sorted(graph.toplevel, reverse=True)]
    while stack:
        source, edge = stack.pop()
        if not wanted(edge):
            continue
        drawn.append((source, edge))
        if edge.key in seen:
            continue
        seen.add(edge.key)
        stack.extend((edge.key, e) for e in sorted(graph.nodes[edge.key].edges, reverse=True))
    if edges == "build":
        drawn = _build_relevant(graph, drawn)
        seen = {e.key for _, e in drawn}
    return _Drawn(sorted(seen), sorted(set(drawn)))


def _build_relevant(graph: Graph, drawn: list[tuple[NodeKey, Edge]]) -> list[tuple[NodeKey, Edge]]:
    """Drop install edges that lead to no build edge: they are noise in a build picture."""
    leads: set[NodeKey] = {s for s, e in drawn if e.req_type in BUILD_REQ_TYPES}
    changed = True
    while changed:  # a fixed point: lock graphs are small and this stays obvious
        changed = False
        for source, edge in drawn:
            if edge.key in leads and source not in leads:
                leads.add(source)
                changed = True
    return [(s, e) for s, e in drawn if e.req_type in BUILD_REQ_TYPES or e.key in leads]


def _quote(text: str) -> str:
    # JSON string escaping is valid dot string escaping for our characters.
    return json.dumps(text)


def to_dot(graph: Graph, *, edges: EdgeFilter = "all") -> str:
    drawn = _select(graph, edges)
    root = f"{graph.collection}/{graph.variant}"
    out = [
        f"digraph {_quote(root)} {{",
        "  rankdir=LR;",
        '  node [shape=box, fontname="sans-serif"];',
        f"  {_quote(root)} [shape=ellipse, style=bold];",
    ]
    install = {e.key for _, e in drawn.edges if e.req_type not in BUILD_REQ_TYPES}
    for key in drawn.nodes:
        style = "" if key in install else " [style=dashed]"
        out.append(f"  {_quote(key)}{style};")
    for source, e in drawn.edges:
        src = _quote(root if source == ROOT else source)
        attrs = f' [style=dashed, label="{e.req_type}"]' if e.req_type in BUILD_REQ_TYPES else ""
        out.append(f"  {src} -> {_quote(e.key)}{attrs};")
    out.append("}")
    return "\n".join(out) + "\n"


def to_mermaid(graph: Graph, *, edges: EdgeFilter = "all") -> str:
    """Mermaid ids must be plain words, so nodes get ``n0, n1 …`` with the key as label."""
    drawn = _select(graph, edges)
    ids = {key: f"n{i}" for i, key in enumerate(drawn.nodes)}
    ids[ROOT] = "root"
    out = ["flowchart LR", f'  root(["{graph.collection}/{graph.variant}"])']
    out += [f'  {ids[key]}["{key}"]' for key in drawn.nodes]
    for source, e in drawn.edges:
        arrow = f"-. {e.req_type} .->" if e.req_type in BUILD_REQ_TYPES else "-->"
        out.append(f"  {ids[source]} {arrow} {ids[e.key]}")
    return "\n".join(out) + "\n"


def dot_to_svg(dot: str, *, which: Callable[[str], str | None] = shutil.which) -> str:
    """Run Graphviz; its absence is a setup problem with an easy way around it."""
    program = which("dot")
    if program is None:
        raise AffineurError(
            "svg output needs Graphviz, and its 'dot' program is not installed",
            hint="install graphviz, or use --format dot (or mermaid) and render it elsewhere",
        )
    result = subprocess.run(
        [program, "-Tsvg"], input=dot, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AffineurError(
            f"graphviz 'dot' failed (exit {result.returncode})",
            causes=tuple(result.stderr.strip().splitlines()[-5:]),
        )
    return result.stdout
