"""The locker over a frozen JSON index (tests/data/indexes/): no network, no subprocess."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from affineur import graph as g
from affineur.errors import AffineurError
from tests.frozen import TARGET, FrozenIndex, RecordingBuilds, frozen_locker, lock_frozen


def keys(graph: g.Graph) -> set[str]:
    return set(graph.nodes)


def installed(graph: g.Graph) -> set[str]:
    return set(g.install_closure(graph))


def edges(graph: g.Graph, key: str, req_type: str) -> dict[str, str]:
    return {e.key: e.req for e in graph.node(key).edges_of(req_type)}


@pytest.fixture
def index() -> FrozenIndex:
    return FrozenIndex.load("tools")


def test_install_closure_is_resolved_jointly(index: FrozenIndex) -> None:
    graph = lock_frozen(index, ["app"])
    # web 2.0 is newest but needs util>=3, which app refuses: only a joint
    # resolution lands on web 1.0 with util 2.0.
    assert installed(graph) == {"app==1.0", "web==1.0", "util==2.0", "packaging==24.0"}
    assert [(e.key, e.req) for e in graph.toplevel] == [("app==1.0", "app")]
    assert edges(graph, "web==1.0", "install") == {"util==2.0": "util<3"}


def test_build_environments_are_whole_sets_preferring_the_graph(index: FrozenIndex) -> None:
    graph = lock_frozen(index, ["app"])
    # hatchling needs packaging at run time, so it is in app's build environment;
    # 24.0, not the newer 25.0, because the install closure already holds it.
    assert graph.node("app==1.0").build_env == (
        "hatchling==1.0",
        "packaging==24.0",
        "pathspec==1.0",
    )
    assert edges(graph, "app==1.0", "build-system") == {"hatchling==1.0": "hatchling>=1"}
    assert graph.node("hatchling==1.0").build_env == ("flit-core==4.0",)
    assert graph.node("hatchling==1.0").build_backend == "hatchling.build"
    flit = graph.node("flit-core==4.0")
    assert (flit.build_env, flit.build_backend) == ((), "flit_core.buildapi")
    # Build-only packages are nodes, but not installed.
    assert {"hatchling==1.0", "pathspec==1.0", "flit-core==4.0"} <= keys(graph) - installed(graph)
    order = g.build_order(graph.nodes)
    for key, node in graph.nodes.items():
        assert all(order.index(dep) < order.index(key) for dep in node.build_env)


def test_a_tool_pinned_lower_by_one_package_coexists_with_the_newer_one(
    index: FrozenIndex,
) -> None:
    graph = lock_frozen(index, ["legacy", "modern"])
    assert graph.node("legacy==1.0").build_env == ("flit-core==3.0", "wheel-tool==1.0")
    assert graph.node("modern==1.0").build_env == ("flit-core==4.0",)
    assert graph.versions_of("flit-core") == ["3.0", "4.0"]
    # What get_requires_for_build_wheel returned is a typed edge of its own.
    assert edges(graph, "legacy==1.0", "build-backend") == {"wheel-tool==1.0": "wheel-tool"}


def test_constraints_hold_for_build_environments_too(index: FrozenIndex) -> None:
    graph = lock_frozen(index, ["app", "util"], constraints=["flit-core<4"])
    assert graph.versions_of("flit-core") == ["3.0"]


def test_previous_versions_are_kept_and_upgrade_moves_only_what_it_names() -> None:
    first = lock_frozen(_without(FrozenIndex.load("tools"), "web==2.0", "util==3.0"), ["web"])
    assert installed(first) == {"web==1.0", "util==2.0"}
    # Newer releases appeared; a re-lock keeps what the previous lock holds.
    index = FrozenIndex.load("tools")
    again = lock_frozen(index, ["web"], previous=[first])
    assert installed(again) == {"web==1.0", "util==2.0"}
    # Upgrading web forces util along (web 2.0 needs util>=3).
    moved = lock_frozen(index, ["web"], previous=[first], upgrade=frozenset({"web"}))
    assert installed(moved) == {"web==2.0", "util==3.0"}
    # Upgrading util alone cannot pass web 1.0's util<3.
    util_only = lock_frozen(index, ["web"], previous=[first], upgrade=frozenset({"util"}))
    assert installed(util_only) == {"web==1.0", "util==2.0"}
    assert installed(lock_frozen(index, ["web"], previous=[first], upgrade=True)) == {
        "web==2.0",
        "util==3.0",
    }


def _without(index: FrozenIndex, *pins: str) -> FrozenIndex:
    for pin in pins:
        name, version = pin.split("==")
        del index.releases[canonicalize_name(name)][Version(version)]
    return index


def test_a_build_time_cycle_is_refused_with_its_path_and_fix(index: FrozenIndex) -> None:
    with pytest.raises(AffineurError) as info:
        lock_frozen(index, ["cyc-a"])
    assert info.value.stage == "cycle"
    assert info.value.message == "build-time cycle: cyc-a==1.0 -> cyc-b==1.0 -> cyc-a==1.0"
    assert info.value.hint is not None and "prebuilt: true" in info.value.hint
    # Taking one member's upstream wheel breaks it.
    graph = lock_frozen(index, ["cyc-b"], overrides={"cyc-a": {"prebuilt": True}})
    a = graph.node("cyc-a==1.0")
    assert a.prebuilt and a.sdist is None and a.wheel is not None
    assert a.wheel.filename == "cyc_a-1.0-py3-none-any.whl"
    assert graph.node("cyc-b==1.0").build_env == ("cyc-a==1.0",)


def test_metadata_comes_from_the_cheapest_source_that_can_be_trusted(
    index: FrozenIndex,
) -> None:
    locker, hooks = frozen_locker(index, ["meta-static", "meta-wheel", "meta-hook"])
    graph = locker.run()
    for name in ("meta-static", "meta-wheel", "meta-hook"):
        assert edges(graph, f"{name}==1.0", "install") == {"util==1.0": "util<2"}
    assert [c for c in index.calls if c.startswith("core-metadata")] == [
        "core-metadata meta_wheel-1.0-py3-none-any.whl"
    ]
    assert [c for c in hooks.calls if c.startswith("prepare-metadata")] == [
        "prepare-metadata meta-hook==1.0"
    ]
    with pytest.raises(AffineurError) as info:
        lock_frozen(index, ["meta-none"])
    assert info.value.package == "meta-none" and "no static metadata" in info.value.message


def test_requires_python_and_yanked_files_are_left_out(index: FrozenIndex) -> None:
    assert installed(lock_frozen(index, ["py-limited"])) == {"py-limited==1.0"}
    py312 = {**TARGET, "python_version": "3.12", "python_full_version": "3.12.0"}
    assert installed(lock_frozen(index, ["py-limited"], target=py312)) == {"py-limited==2.0"}
    assert installed(lock_frozen(index, ["py-limited==2.1"])) == {"py-limited==2.1"}


def test_every_sdist_and_hook_is_asked_once(index: FrozenIndex) -> None:
    locker, hooks = frozen_locker(index, ["app", "legacy"])
    locker.run()
    asked = [c for c in hooks.calls if c.startswith("requirements")]
    assert len(asked) == len(set(asked))
    fetched = [c for c in index.calls if c.startswith("sdist")]
    assert len(fetched) == len(set(fetched))


def test_the_same_inputs_give_the_same_bytes(index: FrozenIndex) -> None:
    first = g.dumps(lock_frozen(index, ["app", "legacy"]))
    assert g.dumps(lock_frozen(FrozenIndex.load("tools"), ["app", "legacy"])) == first


def test_source_mode_builds_each_tool_once_bottom_up_as_stage_two_will(
    index: FrozenIndex,
) -> None:
    builds = RecordingBuilds()
    graph = lock_frozen(index, ["app"], discovery="source", builds=builds)
    assert graph.discovery == "source"
    assert not [c for c in index.calls if c.startswith("discovery-wheel")]
    assert len(builds.built) == len(set(builds.built))
    # Each build had exactly the environment the lock records, so stage 2 finds it.
    for key, env in builds.envs.items():
        assert tuple(env) == graph.node(key).build_env
    assert set(builds.built) == {
        "flit-core==4.0",
        "hatchling==1.0",
        "packaging==24.0",
        "pathspec==1.0",
    }


def test_source_mode_reports_a_cycle_as_a_path(index: FrozenIndex) -> None:
    with pytest.raises(AffineurError) as info:
        lock_frozen(index, ["cyc-a"], discovery="source", builds=RecordingBuilds())
    assert info.value.message == "build-time cycle: cyc-b==1.0 -> cyc-a==1.0 -> cyc-b==1.0"


def test_an_unknown_project_is_a_clear_error(index: FrozenIndex) -> None:
    with pytest.raises(AffineurError) as info:
        lock_frozen(index, ["no-such-thing"])
    assert info.value.package == "no-such-thing"


def test_the_lock_stage_does_not_import_the_build_stage() -> None:
    import ast
    from pathlib import Path

    import affineur.lock

    found = []
    for path in sorted(Path(affineur.lock.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            found += [
                f"{path.name}: {n}"
                for n in names
                if n.startswith(("affineur.build", "affineur.run"))
            ]
    assert found == []


def test_two_kernels_give_the_same_lock_and_the_same_build_keys(index: FrozenIndex) -> None:
    from pathlib import Path

    from packaging.markers import default_environment

    from affineur.build import BuildInputs, build_keys
    from affineur.config import Variant, target_environment

    variant = Variant(
        name="cpu",
        description="",
        python="3.11",
        platform={"sys_platform": "linux", "platform_machine": "x86_64"},
        indexes=(),
        discovery="wheels",
        env={},
        resources={},
        defaults={},
        changelog=(),
        timeout=None,
        network_isolation=True,
        file=Path("variants/cpu.yaml"),
    )
    host = {k: str(v) for k, v in default_environment().items()}
    hosts = [
        {**host, "platform_release": "5.15.0-91-generic", "platform_version": "#101-Ubuntu SMP"},
        {**host, "platform_release": "6.18.44-fc", "platform_version": "#1 SMP PREEMPT_DYNAMIC"},
    ]
    graphs = [
        lock_frozen(
            FrozenIndex.load("tools"), ["app", "marked"], target=target_environment(variant, h)
        )
        for h in hosts
    ]
    assert g.dumps(graphs[0]) == g.dumps(graphs[1])
    assert "platform_release" not in graphs[0].target
    keys = [build_keys(graph, lambda node: BuildInputs({})) for graph in graphs]
    assert keys[0] == keys[1]


def test_edges_hold_only_requirements_whose_markers_apply(index: FrozenIndex) -> None:
    graph = lock_frozen(index, ["marked"])
    assert [(e.key, e.req) for e in graph.node("marked==1.0").edges] == [
        ("flit-core==4.0", "flit-core>=3")
    ]
    assert graph.node("marked==1.0").build_env == ("flit-core==4.0",)


def test_a_relock_keeps_build_only_pins_until_upgraded() -> None:
    first = lock_frozen(_without(FrozenIndex.load("tools"), "flit-core==4.0"), ["app"])
    assert first.versions_of("flit-core") == ["3.0"]
    index = FrozenIndex.load("tools")
    assert lock_frozen(index, ["app"], previous=[first]).nodes == first.nodes
    upgraded = lock_frozen(index, ["app"], previous=[first], upgrade=frozenset({"flit-core"}))
    assert upgraded.versions_of("flit-core") == ["4.0"]


def test_a_package_that_needs_an_older_tool_moves_no_other_build_environment(
    index: FrozenIndex,
) -> None:
    from affineur.lock._moves import Move, explain_moves

    first = lock_frozen(index, ["app"])
    assert first.versions_of("flit-core") == ["4.0"]
    second = lock_frozen(index, ["app", "legacy"], previous=[first])
    for key, node in first.nodes.items():
        assert second.node(key).build_env == node.build_env, key
    assert second.node("legacy==1.0").build_env == ("flit-core==3.0", "wheel-tool==1.0")
    moves = explain_moves(first, second)
    assert Move("flit-core", None, "3.0", "legacy needs flit-core<4") in moves
    assert [m.line() for m in moves if m.name == "legacy"] == [
        "legacy 1.0 added: the collection needs legacy"
    ]


def test_each_move_names_its_cause(index: FrozenIndex) -> None:
    from affineur.lock._moves import explain_moves

    first = lock_frozen(_without(FrozenIndex.load("tools"), "web==2.0", "util==3.0"), ["web"])
    web = lock_frozen(index, ["web"], previous=[first], upgrade=frozenset({"web"}))
    assert [m.line() for m in explain_moves(first, web, upgrade=frozenset({"web"}))] == [
        "util 2.0 -> 3.0: web needs util>=3",
        "web 1.0 -> 2.0: --upgrade web",
    ]
    pinned = lock_frozen(index, ["util"], previous=[web], constraints=["util<3"])
    lines = [m.line() for m in explain_moves(web, pinned, constraints=["util<3"])]
    assert "util 3.0 -> 2.0: constraint util<3" in lines
    assert "web 2.0 removed: no longer needed" in lines


def _lock_looking_ahead(index: FrozenIndex, requirements: list[str]) -> tuple[str, set[str]]:
    """The lock's bytes with two threads looking ahead, and the threads that ran hooks."""
    locker, hooks = frozen_locker(index, requirements, lookahead=2)
    threads: set[str] = set()
    asked = hooks.requirements

    def requirements_seen(*args: Any, **kwargs: Any) -> Any:
        threads.add(threading.current_thread().name)
        return asked(*args, **kwargs)

    hooks.requirements = requirements_seen  # type: ignore[method-assign]
    return g.dumps(locker.run()), threads


def test_looking_ahead_runs_discovery_in_threads_and_changes_no_byte() -> None:
    for requirements in (["app", "legacy", "modern"], ["web", "util", "legacy"]):
        serial = g.dumps(lock_frozen(FrozenIndex.load("tools"), requirements))
        ahead, threads = _lock_looking_ahead(FrozenIndex.load("tools"), requirements)
        assert ahead == serial
        assert any(t.startswith("discovery") for t in threads), threads
