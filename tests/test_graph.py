"""Lock graph model: serialisation, build order and cycles (pure)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from affineur.errors import AffineurError
from affineur.graph import (
    Edge,
    FileRef,
    Graph,
    Node,
    NodeKey,
    build_order,
    dumps,
    find_build_cycle,
    install_closure,
    loads,
)
from tests.paths import REPO

SHA = "0" * 64


def node(
    key: str,
    *,
    build_env: tuple[str, ...] = (),
    install: tuple[str, ...] = (),
    prebuilt: bool = False,
) -> Node:
    name, version = key.split("==")
    edges = tuple(Edge(NodeKey(k), "install", k.split("==")[0]) for k in install) + tuple(
        Edge(NodeKey(k), "build-system", k.split("==")[0]) for k in build_env
    )
    return Node(
        name=name,
        version=version,
        sdist=None if prebuilt else FileRef(f"{name}-{version}.tar.gz", SHA),
        wheel=FileRef(f"{name}-{version}-py3-none-any.whl", SHA) if prebuilt else None,
        prebuilt=prebuilt,
        edges=edges,
        build_env=tuple(NodeKey(k) for k in build_env),
    )


def graph(*nodes: Node, top: tuple[str, ...] = ()) -> Graph:
    return Graph(
        collection="c",
        variant="cpu",
        input_hash="a" * 64,
        target={"python_version": "3.11"},
        toplevel=tuple(Edge(NodeKey(k), "toplevel", k.split("==")[0]) for k in top),
        nodes={n.key: n for n in nodes},
    )


def test_round_trip_is_byte_stable_and_valid() -> None:
    g = graph(
        node("app==1.0", install=("lib==2.0",), build_env=("tool==1.0",)),
        node("lib==2.0", build_env=("tool==1.0",)),
        node("tool==1.0"),
        top=("app==1.0",),
    )
    raw = dumps(g)
    assert dumps(loads(raw)) == raw
    schema = json.loads((REPO / "schemas" / "graph.schema.json").read_text())
    jsonschema.validate(json.loads(raw), schema)


def test_build_order_puts_build_env_first_and_is_stable() -> None:
    nodes = graph(
        node("app==1.0", build_env=("tool==1.0", "base==1.0")),
        node("tool==1.0", build_env=("base==1.0",)),
        node("base==1.0"),
        node("zeta==1.0"),
    ).nodes
    assert build_order(nodes) == ["base==1.0", "tool==1.0", "app==1.0", "zeta==1.0"]


def test_cycle_is_reported_as_a_path_with_the_fix() -> None:
    nodes = graph(
        node("app==1.0", build_env=("cycle-a==1.0",)),
        node("cycle-a==1.0", build_env=("cycle-b==1.0",)),
        node("cycle-b==1.0", build_env=("cycle-a==1.0",)),
    ).nodes
    assert find_build_cycle(nodes) == ["cycle-a==1.0", "cycle-b==1.0", "cycle-a==1.0"]
    with pytest.raises(AffineurError) as info:
        build_order(nodes)
    assert info.value.message == "build-time cycle: cycle-a==1.0 -> cycle-b==1.0 -> cycle-a==1.0"
    assert "prebuilt: true" in (info.value.hint or "")


def test_prebuilt_member_breaks_the_cycle() -> None:
    nodes = graph(
        node("cycle-a==1.0", build_env=("cycle-b==1.0",)),
        node("cycle-b==1.0", prebuilt=True),
    ).nodes
    assert find_build_cycle(nodes) is None
    assert build_order(nodes) == ["cycle-b==1.0", "cycle-a==1.0"]


def test_install_closure_ignores_build_edges() -> None:
    g = graph(
        node("app==1.0", install=("lib==2.0",), build_env=("tool==1.0",)),
        node("lib==2.0"),
        node("tool==1.0"),
        top=("app==1.0",),
    )
    assert install_closure(g) == ["app==1.0", "lib==2.0"]


def test_dangling_reference_is_an_error() -> None:
    raw = json.loads(dumps(graph(node("app==1.0", install=("lib==2.0",)), top=("app==1.0",))))
    with pytest.raises(AffineurError, match="refers to packages it does not hold"):
        loads(json.dumps(raw))
