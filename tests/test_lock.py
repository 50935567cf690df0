"""`doit lock` end to end over the fake ecosystem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.ecosystem import FakeProject
from tests.workspace import CATALOG_COLLECTION, Workspace, ok


def build_env_of(ws: Workspace, key: str) -> list[str]:
    return list(ws.nodes()[key]["build_env"])


def edges_of(ws: Workspace, key: str, req_type: str) -> dict[str, str]:
    return {e["key"]: e["req"] for e in ws.nodes()[key]["edges"] if e["req_type"] == req_type}


@pytest.fixture
def catalog(catalog_checkout: Path) -> Workspace:
    """The session's cold lock of the whole standard catalog (see conftest), read only."""
    return Workspace(catalog_checkout, None)


def test_build_tool_chain_extras_and_markers(catalog: Workspace) -> None:
    nodes = catalog.nodes(CATALOG_COLLECTION)
    # Installed: app, lib-a with its 'fast' extra, lib-c (true marker); never lib-b.
    assert {"app==1.0", "lib-a==1.0", "lib-fast==1.0", "lib-c==1.0"} <= set(nodes)
    assert "lib-b==1.0" not in nodes

    def edges(key: str, req_type: str) -> dict[str, str]:
        return {e["key"]: e["req"] for e in nodes[key]["edges"] if e["req_type"] == req_type}

    assert edges("app==1.0", "install") == {
        "lib-a==1.0": "lib-a[fast]>=1",
        "lib-c==1.0": 'lib-c; sys_platform == "linux"',
    }
    # The chain: app is built with chain-backend, which is built with chain-helper,
    # whose runtime dependency chain-base must be in chain-backend's environment.
    assert nodes["app==1.0"]["build_env"] == ["chain-backend==1.0"]
    assert nodes["chain-backend==1.0"]["build_env"] == ["chain-base==1.0", "chain-helper==1.0"]
    assert edges("chain-backend==1.0", "build-system") == {"chain-helper==1.0": "chain-helper>=1"}
    assert nodes["lib-c==1.0"]["build_env"] == ["fakebuild-core==1.0"]
    # Every sdist is pinned by name and hash, never by URL.
    for node in nodes.values():
        assert node["sdist"]["filename"].endswith(".tar.gz")
        assert len(node["sdist"]["sha256"]) == 64
    lock_dir = catalog.root / "lock" / CATALOG_COLLECTION / "cpu"
    assert "http" not in (lock_dir / "graph.json").read_text()
    order = [e["key"] for e in json.loads((lock_dir / "build-order.json").read_text())]
    for key, node in nodes.items():
        for dep in node["build_env"]:
            assert order.index(dep) < order.index(key), (dep, key)


def test_dynamic_build_requirements_are_typed_edges(catalog: Workspace) -> None:
    nodes: dict[str, Any] = catalog.nodes(CATALOG_COLLECTION)

    def edges(key: str, req_type: str) -> dict[str, str]:
        return {e["key"]: e["req"] for e in nodes[key]["edges"] if e["req_type"] == req_type}

    assert edges("dyn-requires==1.0", "build-backend") == {
        "dyn-extra-tool==1.0": "dyn-extra-tool>=1"
    }
    assert edges("dyn-sdist-requires==1.0", "build-sdist") == {
        "dyn-sdist-tool==1.0": "dyn-sdist-tool>=1"
    }
    assert "dyn-extra-tool==1.0" in nodes["dyn-requires==1.0"]["build_env"]


def test_yanked_requires_python_and_prereleases(workspace: Workspace) -> None:
    workspace.collection(["multi"])
    ok(workspace.doit("lock"))
    # 1.1 is yanked, 2.0 needs Python >= 4, 2.1rc1 is a pre-release.
    assert [k for k in workspace.nodes() if k.startswith("multi")] == ["multi==1.0"]
    workspace.collection(["multi==1.1"])
    ok(workspace.doit("lock"))
    assert [k for k in workspace.nodes() if k.startswith("multi")] == ["multi==1.1"]


def test_metadata_from_each_source(workspace: Workspace) -> None:
    workspace.collection(["meta-static", "meta-dynamic-wheel", "meta-dynamic-hook"])
    result = ok(workspace.cli("-v", "lock"))
    for name in ("meta-static", "meta-dynamic-wheel", "meta-dynamic-hook"):
        assert edges_of(workspace, f"{name}==1.0", "install") == {"meta-dep==1.0": "meta-dep>=1"}
    assert (
        "meta-dynamic-wheel==1.0: metadata from meta_dynamic_wheel-1.0-py3-none-any.whl"
        in result.stderr
    )
    assert "meta-dynamic-hook==1.0: metadata from the build backend" in result.stderr
    metadata_files = [r.path for r in workspace.index.requests if r.path.endswith(".metadata")]
    assert [p.rsplit("/", 1)[-1] for p in metadata_files] == [
        "meta_dynamic_wheel-1.0-py3-none-any.whl.metadata"
    ]


def test_conflict_names_both_sides(workspace: Workspace) -> None:
    workspace.collection(["conflict-x", "conflict-y"])
    result = workspace.doit("lock")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    output = result.stdout + result.stderr
    assert "shared<2 (required by conflict-x==1.0)" in output
    assert "shared>=2 (required by conflict-y==1.0)" in output
    assert not (workspace.root / "lock/demo/cpu/graph.json").exists()


def test_cycle_is_reported_with_path_and_fix(workspace: Workspace) -> None:
    workspace.collection(["cycle-a"])
    result = workspace.cli("lock")
    assert result.returncode == 2
    assert "build-time cycle: cycle-a==1.0 -> cycle-b==1.0 -> cycle-a==1.0" in result.stderr
    assert "prebuilt: true" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_package_is_a_clear_error(workspace: Workspace) -> None:
    workspace.collection(["no-such-package"])
    result = workspace.cli("lock")
    assert result.returncode == 2
    assert "no-such-package" in result.stderr and "no such project" in result.stderr
    assert "Traceback" not in result.stderr


def test_relock_with_unchanged_inputs_uses_no_network_and_keeps_bytes(workspace: Workspace) -> None:
    workspace.collection(["app"])
    ok(workspace.doit("lock"))
    before = (workspace.root / "lock/demo/cpu/graph.json").read_bytes()
    workspace.index.clear_requests()
    ok(workspace.doit("lock"))
    assert workspace.index.requests == []
    assert (workspace.root / "lock/demo/cpu/graph.json").read_bytes() == before
    # A forced re-lock goes to the index but, with nothing new there, writes the same bytes.
    ok(workspace.cli("lock", "--force"))
    assert (workspace.root / "lock/demo/cpu/graph.json").read_bytes() == before


def test_relock_after_an_input_change_reads_nothing_again_from_the_sdists(
    workspace: Workspace,
) -> None:
    """A re-lock asks about every package again; what it asks of an sdist is kept by hash."""
    workspace.collection(["meta-static"])
    ok(workspace.doit("lock"))
    before = workspace.nodes()
    kept = workspace.root / "build" / "discovery" / "pkg-info"
    sha256 = before["meta-static==1.0"]["sdist"]["sha256"]
    assert (kept / sha256).read_bytes().startswith(b"Metadata-Version:")
    hooks = sorted((workspace.root / "build" / "discovery" / "hooks").iterdir())
    stamps = {p: p.stat().st_mtime_ns for p in [*kept.iterdir(), *hooks]}

    workspace.collection(["meta-static", "meta-dep"])  # already in the lock
    ok(workspace.doit("lock"))
    assert set(workspace.nodes()) == set(before)
    # No hook ran and no PKG-INFO was looked for in an archive again.
    assert sorted((workspace.root / "build" / "discovery" / "hooks").iterdir()) == hooks
    assert {p: p.stat().st_mtime_ns for p in [*kept.iterdir(), *hooks]} == stamps

    # What the shortcut gives is what the archives give: a lock without it is the same.
    graph = (workspace.root / "lock/demo/cpu/graph.json").read_bytes()
    shutil.rmtree(workspace.root / "build" / "discovery")
    ok(workspace.cli("lock", "--force"))
    assert (workspace.root / "lock/demo/cpu/graph.json").read_bytes() == graph


@pytest.mark.slow
def test_upgrade_one_package_keeps_the_rest(workspace: Workspace) -> None:
    workspace.collection(["lib-a", "meta-static"])
    ok(workspace.doit("lock"))
    workspace.index.add(FakeProject("lib-a", "1.5"), FakeProject("meta-dep", "1.5"))
    # An input change re-locks, but the previous versions are preferred.
    workspace.collection(["lib-a", "meta-static", "lib-fast"])
    ok(workspace.doit("lock"))
    assert {"lib-a==1.0", "meta-dep==1.0"} <= set(workspace.nodes())
    ok(workspace.cli("lock", "--upgrade", "lib-a"))
    assert "lib-a==1.5" in workspace.nodes() and "meta-dep==1.0" in workspace.nodes()
    ok(workspace.cli("lock", "--upgrade-all"))
    assert "meta-dep==1.5" in workspace.nodes()


def test_second_variant_prefers_the_first_variants_versions(workspace: Workspace) -> None:
    workspace.variant("gpu")
    workspace.collection(["lib-a"], variants=("cpu",))
    ok(workspace.doit("lock"))
    workspace.index.add(FakeProject("lib-a", "1.5"))
    workspace.collection(["lib-a"], variants=("cpu", "gpu"))
    ok(workspace.doit("lock"))
    assert "lib-a==1.0" in workspace.nodes(variant="gpu")


def test_tampered_sdist_is_refused_with_both_hashes(workspace: Workspace) -> None:
    workspace.collection(["lib-fast"])
    ok(workspace.doit("lock"))
    sdist = workspace.root / "build/sdists/lib_fast-1.0.tar.gz"
    expected = workspace.nodes()["lib-fast==1.0"]["sdist"]["sha256"]
    sdist.write_bytes(b"not the sdist")
    result = workspace.doit("build")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "lib_fast-1.0.tar.gz" in output and expected in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_source_discovery_builds_its_own_tools_and_stage_two_reuses_them(
    cold_workspace: Workspace,
) -> None:
    workspace = cold_workspace
    workspace.variant("cpu", "discovery: source\n")
    workspace.collection(["app"])
    locked = ok(workspace.cli("lock"))
    assert workspace.graph()["discovery"] == "source"
    # No upstream wheel was fetched: the chain was built here, bottom up.
    assert not (workspace.root / "build/upstream-wheels").exists()
    assert "build chain-helper==1.0 to discover with it (source mode)" in locked.stderr
    ok(workspace.doit())
    outcomes = workspace.outcomes()
    assert outcomes["build:cpu:chain-helper-1.0"] == "reused"
    assert outcomes["build:cpu:app-1.0"] == "built"


def test_source_discovery_reports_a_cycle_as_a_path(cold_workspace: Workspace) -> None:
    workspace = cold_workspace
    workspace.variant("cpu", "discovery: source\n")
    workspace.collection(["cycle-a"])
    result = workspace.cli("lock")
    assert result.returncode == 2
    assert "build-time cycle: cycle-b==1.0 -> cycle-a==1.0 -> cycle-b==1.0" in result.stderr
    assert "Traceback" not in result.stderr
