"""Graph assembly: from the install resolution to every node the lock holds.

Starting from the install closure, every package that is built from source
brings its build environment into the graph, and each new member brings its
own, until nothing new appears. What a package is (its files) and what it needs
to be built come from a :class:`NodeFacts`; assembly itself is pure, and refuses
a build-time cycle with its path and the setting that breaks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from affineur import graph as g
from affineur.errors import AffineurError
from affineur.lock._buildenv import build_edges
from affineur.lock._discovery import BuildRequirements
from affineur.lock._resolver import Resolution

__all__ = ["NodeFacts", "assemble"]


class NodeFacts(Protocol):
    def node(self, name: NormalizedName, version: Version) -> g.Node:
        """The bare node: name, version, its sdist or wheel, whether it is prebuilt."""
        ...

    def build(
        self, name: NormalizedName, version: Version
    ) -> tuple[BuildRequirements, Resolution | None]:
        """Its build requirements, and its build environment when they are not empty."""
        ...

    def prefetch(self, name: NormalizedName, version: Version) -> None:
        """``build`` will be asked about this node: work on it may start now.

        It must not change what ``build`` answers, only how soon.
        """
        ...


def _edges(res: Resolution, parent: NormalizedName | None, req_type: g.ReqType) -> list[g.Edge]:
    return [
        g.Edge(g.node_key(d.name, str(d.version)), req_type, d.req)
        for d in res.requirements_of(parent)
    ]


def _add_nodes(
    res: Resolution,
    facts: NodeFacts,
    nodes: dict[g.NodeKey, g.Node],
    queue: list[g.NodeKey],
) -> None:
    for name, version in sorted(res.versions.items()):
        key = g.node_key(name, str(version))
        edges = _edges(res, name, "install")
        if key in nodes:
            old = nodes[key]
            nodes[key] = replace(old, edges=tuple(sorted({*old.edges, *edges})))
            continue
        nodes[key] = replace(facts.node(name, version), edges=tuple(sorted(edges)))
        queue.append(key)
        if not nodes[key].prebuilt:
            facts.prefetch(name, version)


def assemble(
    install: Resolution, facts: NodeFacts, environment: Mapping[str, str]
) -> tuple[tuple[g.Edge, ...], dict[g.NodeKey, g.Node]]:
    """(top-level edges, nodes) of the lock whose install closure is ``install``.

    ``environment`` is the marker environment of the target: only edges whose
    markers apply to it are kept (the resolver already drops the others).
    """
    nodes: dict[g.NodeKey, g.Node] = {}
    toplevel = tuple(_edges(install, None, "toplevel"))
    queue: list[g.NodeKey] = []
    _add_nodes(install, facts, nodes, queue)
    while queue:
        key = queue.pop(0)
        node = nodes[key]
        if node.prebuilt:
            continue
        build, env = facts.build(canonicalize_name(node.name), Version(node.version))
        if env is None:
            nodes[key] = replace(
                node, build_backend=build.build_backend_name, host_tools=build.host_tools
            )
            continue
        _add_nodes(env, facts, nodes, queue)
        node = nodes[key]
        nodes[key] = replace(
            node,
            edges=tuple(sorted({*node.edges, *build_edges(build, env, environment)})),
            build_env=tuple(sorted(g.node_key(n, str(v)) for n, v in env.versions.items())),
            build_backend=build.build_backend_name,
            host_tools=build.host_tools,
        )
    cycle = g.find_build_cycle(nodes)
    if cycle:
        raise AffineurError(
            "build-time cycle: " + " -> ".join(cycle), stage="cycle", hint=g.cycle_hint(cycle)
        )
    return toplevel, nodes
