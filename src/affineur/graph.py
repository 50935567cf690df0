"""The lock: a graph of every package, version, source hash and typed edge.

This module is pure data and graph algorithms: no network, no file system beyond
(de)serialising bytes. ``lock/<collection>/<variant>/graph.json`` is the
:func:`dumps` of a :class:`Graph`; its format is ``schemas/graph.schema.json``.

Node keys are ``name==version`` (canonical name), as in fromager's graph, and the
root of the graph is the node with the empty key whose edges are the collection's
top-level requirements. Several versions of one package may be nodes at once
(two build environments may need different setuptools); the install closure of
the collection holds one version of each name.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NewType, get_args

from packaging.utils import canonicalize_name

from affineur.errors import AffineurError

__all__ = [
    "BUILD_REQ_TYPES",
    "ROOT",
    "Crate",
    "Edge",
    "FileRef",
    "GitRef",
    "Graph",
    "Node",
    "NodeKey",
    "Publisher",
    "ReqType",
    "VendoredCrates",
    "build_order",
    "crates_data",
    "crates_from_data",
    "dumps",
    "find_build_cycle",
    "install_closure",
    "loads",
    "marker_environment",
    "node_data",
    "node_key",
]

NodeKey = NewType("NodeKey", str)
ReqType = Literal["toplevel", "install", "build-system", "build-backend", "build-sdist"]
BUILD_REQ_TYPES: frozenset[str] = frozenset({"build-system", "build-backend", "build-sdist"})
ROOT = NodeKey("")
GRAPH_FORMAT = 1


_MARKER_NAMES = (
    "implementation_name",
    "implementation_version",
    "os_name",
    "platform_machine",
    "platform_python_implementation",
    "platform_release",
    "platform_system",
    "platform_version",
    "python_full_version",
    "python_version",
    "sys_platform",
)


def marker_environment(target: Mapping[str, str]) -> dict[str, str]:
    """A lock's target as a complete PEP 508 environment, to evaluate markers in.

    A lock records only the values that decide it; a marker naming another one
    (the kernel's ``platform_release``) sees an empty string, the same on every
    machine, instead of failing or reading the host.
    """
    return {**dict.fromkeys(_MARKER_NAMES, ""), **target}


def node_key(name: str, version: str) -> NodeKey:
    return NodeKey(f"{canonicalize_name(name)}=={version}")


@dataclass(frozen=True, order=True)
class Edge:
    """A requirement of one node resolved to another node.

    ``req`` keeps the requirement exactly as its author wrote it (markers and
    extras included), so a reviewer of a lock diff sees why the edge exists.
    """

    key: NodeKey
    req_type: ReqType
    req: str


@dataclass(frozen=True)
class Publisher:
    """Who published a file, as a PEP 740 attestation of the index names them.

    ``kind`` is the trusted publisher's kind (``GitHub``, ``GitLab`` …);
    ``claims`` its identity (repository, workflow, environment …), sorted.
    """

    kind: str
    claims: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        shown = " ".join(v for _, v in self.claims)
        return f"{self.kind} {shown}".strip()

    def to_data(self) -> dict[str, str]:
        return {"kind": self.kind, **dict(self.claims)}

    @classmethod
    def from_data(cls, raw: Mapping[str, Any]) -> Publisher:
        claims = tuple(sorted((str(k), str(v)) for k, v in raw.items() if k != "kind"))
        return cls(str(raw["kind"]), claims)


@dataclass(frozen=True)
class FileRef:
    """A distribution file by name and hash, never by URL.

    Without a URL the lock works unchanged against any mirror: the file is found
    again through the configured index by its name and checked against the hash.
    ``attested_by`` lists the publishers whose PEP 740 attestations for exactly
    these bytes the index served when the lock was made.
    """

    filename: str
    sha256: str
    attested_by: tuple[Publisher, ...] = ()


@dataclass(frozen=True, order=True)
class Crate:
    """One Rust crate an sdist's Cargo.lock names; ``sha256`` is the .crate file's
    checksum as Cargo.lock records it (None for a git dependency, which has none)."""

    name: str
    version: str
    sha256: str | None = None


@dataclass(frozen=True)
class VendoredCrates:
    """The crates an sdist needs, fetched at lock time so the build needs no network.

    ``sha256`` is the hash of the whole vendored tree (:func:`affineur.pep517.tree_hash`),
    so a build can check every byte cargo will read against the lock; ``crates``
    lists them for review, the SBOM and provenance.
    """

    sha256: str
    crates: tuple[Crate, ...] = ()


@dataclass(frozen=True)
class GitRef:
    """Where a source archive made from git came from: the node's ``sdist`` is its archive.

    ``url`` never carries credentials; ``ref`` is what the override asked for,
    ``commit`` what it resolved to when the lock was made.
    """

    url: str
    ref: str
    commit: str


@dataclass(frozen=True)
class Node:
    name: str
    version: str
    sdist: FileRef | None = None
    wheel: FileRef | None = None
    prebuilt: bool = False
    build_backend: str | None = None
    edges: tuple[Edge, ...] = ()
    build_env: tuple[NodeKey, ...] = ()
    git: GitRef | None = None
    host_tools: tuple[tuple[str, str | None], ...] = ()
    """Host build tools the ``get_requires`` hooks looked for when locking, and what
    each was there (its version line, None: absent): the hooks' answer, so the
    lock, depended on them, and a building host where they differ may get another."""
    crates: VendoredCrates | None = None

    @property
    def key(self) -> NodeKey:
        return node_key(self.name, self.version)

    def edges_of(self, *req_types: str) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.req_type in req_types)


@dataclass(frozen=True)
class Graph:
    """One collection locked for one variant."""

    collection: str
    variant: str
    input_hash: str
    target: Mapping[str, str]
    toplevel: tuple[Edge, ...]
    nodes: Mapping[NodeKey, Node]
    discovery: str = "wheels"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def node(self, key: str) -> Node:
        try:
            return self.nodes[NodeKey(key)]
        except KeyError:
            raise AffineurError(f"{key} is not in the lock", stage="lock") from None

    def versions_of(self, name: str) -> list[str]:
        canonical = canonicalize_name(name)
        return sorted(n.version for n in self.nodes.values() if n.name == canonical)


def install_closure(graph: Graph) -> list[NodeKey]:
    """Keys reachable from the top-level requirements through install edges only."""
    seen: set[NodeKey] = set()
    stack = [e.key for e in graph.toplevel]
    while stack:
        key = stack.pop()
        if key in seen:
            continue
        seen.add(key)
        stack.extend(e.key for e in graph.nodes[key].edges_of("install"))
    return sorted(seen)


def _build_deps(node: Node) -> tuple[NodeKey, ...]:
    # A prebuilt node is taken as an upstream wheel: it needs nothing built first.
    return () if node.prebuilt else node.build_env


def find_build_cycle(nodes: Mapping[NodeKey, Node]) -> list[NodeKey] | None:
    """A build-time cycle as a path ``[a, b, a]``, or None.

    The relation is "must be built before": every member of a node's build
    environment. Iterative DFS so that deep build chains cannot hit the
    recursion limit.
    """
    state: dict[NodeKey, int] = {}  # 1 = on the current path, 2 = finished
    for start in sorted(nodes):
        if start in state:
            continue
        path: list[NodeKey] = [start]
        iters = [iter(sorted(_build_deps(nodes[start])))]
        state[start] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
                continue
            if nxt not in nodes:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(_build_deps(nodes[nxt]))))
    return None


def build_order(nodes: Mapping[NodeKey, Node]) -> list[NodeKey]:
    """Every node after its whole build environment; ties broken by key for stable bytes."""
    cycle = find_build_cycle(nodes)
    if cycle:
        raise AffineurError(
            "build-time cycle: " + " -> ".join(cycle),
            stage="cycle",
            hint=cycle_hint(cycle),
        )
    waiting = {k: {d for d in _build_deps(n) if d in nodes} for k, n in nodes.items()}
    users: dict[NodeKey, list[NodeKey]] = {k: [] for k in nodes}
    for key, deps in waiting.items():
        for dep in deps:
            users[dep].append(key)
    ready = [k for k, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[NodeKey] = []
    while ready:
        key = heapq.heappop(ready)
        order.append(key)
        for user in users[key]:
            waiting[user].discard(key)
            if not waiting[user]:
                heapq.heappush(ready, user)
    return order


def cycle_hint(cycle: Sequence[str]) -> str:
    first = cycle[0].split("==")[0]
    second = cycle[1].split("==")[0] if len(cycle) > 1 else first
    return (
        f"break it with 'prebuilt: true' in overrides/{first}.yaml (take the upstream wheel), "
        f"or remove the requirement with 'build_requires: {{remove: [{second}]}}' "
        f"in overrides/{first}.yaml"
    )


# --- serialisation ---------------------------------------------------------


def _edge_json(edge: Edge) -> dict[str, str]:
    return {"key": edge.key, "req": edge.req, "req_type": edge.req_type}


def _file_json(ref: FileRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    data: dict[str, Any] = {"filename": ref.filename, "sha256": ref.sha256}
    if ref.attested_by:
        data["attested_by"] = [p.to_data() for p in ref.attested_by]
    return data


def node_data(n: Node) -> dict[str, Any]:
    """One node as graph.json holds it (provenance statements quote it whole)."""
    data: dict[str, Any] = {
        "name": n.name,
        "version": n.version,
        "prebuilt": n.prebuilt,
        "edges": [_edge_json(e) for e in sorted(n.edges)],
        "build_env": sorted(n.build_env),
    }
    if n.sdist is not None:
        data["sdist"] = _file_json(n.sdist)
    if n.wheel is not None:
        data["wheel"] = _file_json(n.wheel)
    if n.build_backend is not None:
        data["build_backend"] = n.build_backend
    if n.git is not None:
        data["git"] = {"url": n.git.url, "ref": n.git.ref, "commit": n.git.commit}
    if n.host_tools:
        data["host_tools"] = dict(sorted(n.host_tools))
    if n.crates is not None:
        data["crates"] = crates_data(n.crates)
    return data


def crates_data(vendored: VendoredCrates) -> dict[str, Any]:
    packages = []
    for crate in sorted(vendored.crates):
        entry = {"name": crate.name, "version": crate.version}
        if crate.sha256 is not None:
            entry["sha256"] = crate.sha256
        packages.append(entry)
    return {"sha256": vendored.sha256, "packages": packages}


def crates_from_data(raw: Mapping[str, Any] | None) -> VendoredCrates | None:
    if raw is None:
        return None
    crates = tuple(
        sorted(Crate(c["name"], c["version"], c.get("sha256")) for c in raw.get("packages", ()))
    )
    return VendoredCrates(raw["sha256"], crates)


def to_data(graph: Graph) -> dict[str, Any]:
    nodes: dict[str, Any] = {ROOT: {"edges": [_edge_json(e) for e in sorted(graph.toplevel)]}}
    for key in sorted(graph.nodes):
        nodes[key] = node_data(graph.nodes[key])
    return {
        "format": GRAPH_FORMAT,
        "collection": graph.collection,
        "variant": graph.variant,
        "input_hash": graph.input_hash,
        "discovery": graph.discovery,
        "target": dict(sorted(graph.target.items())),
        "meta": dict(graph.meta),
        "nodes": nodes,
    }


def dumps(graph: Graph) -> bytes:
    """Deterministic bytes: the same graph always serialises identically, so a
    re-lock that changes nothing leaves git with nothing to show."""
    return (json.dumps(to_data(graph), indent=2, sort_keys=True) + "\n").encode()


def _edges(raw: Iterable[Mapping[str, str]]) -> tuple[Edge, ...]:
    out = []
    for e in raw:
        req_type = e["req_type"]
        if req_type not in get_args(ReqType):
            raise AffineurError(f"unknown req_type {req_type!r}", stage="lock")
        out.append(Edge(NodeKey(e["key"]), req_type, e["req"]))  # type: ignore[arg-type]
    return tuple(out)


def _file(raw: Mapping[str, Any] | None) -> FileRef | None:
    if raw is None:
        return None
    publishers = tuple(Publisher.from_data(p) for p in raw.get("attested_by", ()))
    return FileRef(raw["filename"], raw["sha256"], publishers)


def from_data(data: Mapping[str, Any]) -> Graph:
    raw_nodes = dict(data["nodes"])
    root = raw_nodes.pop(ROOT, {"edges": []})
    nodes: dict[NodeKey, Node] = {}
    for key, n in raw_nodes.items():
        node = Node(
            name=n["name"],
            version=n["version"],
            sdist=_file(n.get("sdist")),
            wheel=_file(n.get("wheel")),
            prebuilt=n.get("prebuilt", False),
            build_backend=n.get("build_backend"),
            edges=_edges(n.get("edges", ())),
            build_env=tuple(NodeKey(k) for k in n.get("build_env", ())),
            git=GitRef(**n["git"]) if "git" in n else None,
            host_tools=tuple(sorted(n.get("host_tools", {}).items())),
            crates=crates_from_data(n.get("crates")),
        )
        if node.key != key:
            raise AffineurError(f"node {key!r} holds {node.key!r}", stage="lock")
        nodes[NodeKey(key)] = node
    graph = Graph(
        collection=data["collection"],
        variant=data["variant"],
        input_hash=data["input_hash"],
        target=dict(data["target"]),
        toplevel=_edges(root["edges"]),
        nodes=nodes,
        discovery=data.get("discovery", "wheels"),
        meta=dict(data.get("meta", {})),
    )
    dangling = sorted(
        {e.key for n in [*nodes.values()] for e in n.edges if e.key not in nodes}
        | {k for n in nodes.values() for k in n.build_env if k not in nodes}
        | {e.key for e in graph.toplevel if e.key not in nodes}
    )
    if dangling:
        raise AffineurError(
            "the lock refers to packages it does not hold", stage="lock", causes=dangling
        )
    return graph


def loads(raw: bytes | str) -> Graph:
    """Parse graph.json bytes (schema validation is the caller's, who knows the file name)."""
    return from_data(json.loads(raw))
