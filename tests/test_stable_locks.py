"""Stable locks and exact rebuilds, end to end through doit and affineur over the fake index."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from affineur import graph as g
from affineur.pep517 import host_tool_states, tool_state
from tests.ecosystem import SELF_HOSTED, FakeIndex, FakeProject
from tests.workspace import Workspace, make_workspace, ok


def test_a_build_tool_that_asks_for_a_helper_only_when_missing_builds(
    workspace: Workspace,
) -> None:
    # At lock time the hook sees no helper and asks for it; at build time the
    # locked helper is installed and the hook asks for nothing: not drift.
    workspace.write("overrides/fake-patchelf.yaml", "prebuilt: true\n")
    workspace.collection(["helper-when-missing"])
    ok(workspace.doit("lock"))
    node = workspace.nodes()["helper-when-missing==1.0"]
    assert node["build_env"] == ["fake-patchelf==1.0"]
    ok(workspace.doit())
    assert workspace.outcomes()["build:cpu:helper-when-missing-1.0"] == "built"


def test_a_hook_asking_for_what_the_lock_lacks_names_it_and_the_fix(workspace: Workspace) -> None:
    workspace.collection(["dyn-requires"])
    ok(workspace.doit("lock"))
    path = workspace.root / "lock/demo/cpu/graph.json"
    data = json.loads(path.read_text())
    node = data["nodes"]["dyn-requires==1.0"]
    # A lock made when the hook asked for less than it does now.
    node["edges"] = [e for e in node["edges"] if e["req_type"] != "build-backend"]
    node["build_env"] = [k for k in node["build_env"] if not k.startswith("dyn-extra-tool==")]
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    result = workspace.doit("build")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert (
        "get_requires_for_build_wheel asks for dyn-extra-tool>=1, "
        "which the locked build environment does not have"
    ) in output
    assert 'build_requires: {add: ["dyn-extra-tool>=1"]}' in output
    assert "overrides/dyn-requires.yaml" in output


def test_a_comment_edit_keeps_check_green_and_doit_a_networkless_noop(
    workspace: Workspace,
) -> None:
    workspace.collection(["lib-a[fast]"])
    workspace.write("overrides/lib-a.yaml", "env: {A: '1'}\n")
    ok(workspace.doit())
    lock_bytes = (workspace.root / "lock/demo/cpu/graph.json").read_bytes()
    workspace.write(
        "collections/demo.toml",
        "# what the demo team ships; reviewed weekly\n"
        'requirements = [ "lib-a [fast]" ]  # with the fast extra\n'
        'constraints = []\nvariants = [ "cpu" ]\ndescription = "the demo, reworded"\n',
    )
    workspace.write("overrides/lib-a.yaml", "# why: the test suite reads A\nenv:\n  A: '1'\n")
    ok(workspace.cli("check"))
    assert workspace.index is not None
    workspace.index.clear_requests()
    ok(workspace.doit())
    assert workspace.index.requests == []
    assert workspace.executed() == []
    assert (workspace.root / "lock/demo/cpu/graph.json").read_bytes() == lock_bytes


def _leaf_ecosystem() -> list[FakeProject]:
    """tool-plugin needs leaf at run time, so leaf is in the build key of what it builds."""

    def with_core(project: FakeProject) -> FakeProject:
        return replace(project, build_requires=("tool-core",), backend="tool_core")

    return [
        FakeProject("tool-core", "1.0", provides_backend=True, backend=SELF_HOSTED),
        with_core(FakeProject("leaf", "1.0")),
        with_core(FakeProject("leaf", "2.0")),
        with_core(
            FakeProject(
                "tool-plugin",
                "1.0",
                requires=("leaf",),
                provides_backend=True,
                backend_imports=("leaf",),
            )
        ),
        with_core(FakeProject("a", "1.0", requires=("leaf",))),
        FakeProject("b", "1.0", build_requires=("tool-plugin",), backend="tool_plugin"),
        with_core(FakeProject("c", "1.0")),
    ]


def _needs(graph: dict[str, dict[str, list[str]]], key: str, leaf: str) -> bool:
    """Whether ``leaf`` is in the build key of ``key`` (its build environments, recursively)."""
    stack, seen = list(graph[key]["build_env"]), set()
    while stack:
        member = stack.pop()
        if member == leaf:
            return True
        if member not in seen:
            seen.add(member)
            stack += graph[member]["build_env"]
    return False


@pytest.mark.slow
def test_pinning_one_leaf_rebuilds_exactly_what_its_build_key_includes(
    tmp_path: Path, empty_fake_index: FakeIndex
) -> None:
    empty_fake_index.add(*_leaf_ecosystem())
    ws = make_workspace(tmp_path / "checkout", empty_fake_index)
    ws.collection(["a", "b", "c"])
    ok(ws.doit())
    before = ws.nodes()
    assert "leaf==2.0" in before
    ws.collection(["a", "b", "c"], constraints=("leaf<2",))
    relocked = ok(ws.doit())
    after = ws.nodes()
    # Only leaf moved, with its cause printed; every other pin stayed.
    assert set(after) - set(before) == {"leaf==1.0"}
    assert set(before) - set(after) == {"leaf==2.0"}
    assert "leaf 2.0 -> 1.0: constraint leaf<2" in relocked.stderr
    rebuilt = {k for k in after if k == "leaf==1.0" or _needs(after, k, "leaf==1.0")}
    assert rebuilt == {"leaf==1.0", "b==1.0"}  # a only installs leaf; tool-plugin only runs it
    assert ws.executed() == sorted(f"build:cpu:{k.replace('==', '-')}" for k in rebuilt)
    assert g.node_key("a", "1.0") in after


def _patchelf(root: Path, version: str) -> Path:
    """A folder holding a ``patchelf`` that says it is ``version``: a host tool."""
    tools = root / f"patchelf-{version}"
    tools.mkdir()
    script = tools / "patchelf"
    script.write_text(f"#!/bin/sh\necho 'patchelf {version}'\n")
    script.chmod(0o755)
    return tools


def _check(ws: Workspace, path: str, *args: str) -> str:
    """``affineur check`` on a host whose PATH is ``path``; its output (it must pass)."""
    from affineur.cli import main

    saved = os.environ["PATH"]
    os.environ["PATH"] = path
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["--root", str(ws.root), "check", *args]) == 0
    finally:
        os.environ["PATH"] = saved
    return out.getvalue()


@pytest.mark.slow
def test_the_lock_records_a_host_tool_a_hook_relied_on_and_check_warns_where_it_differs(
    tmp_path: Path, empty_fake_index: FakeIndex
) -> None:
    # Like meson-python: get_requires asks for a patchelf wheel only when no patchelf
    # is on PATH, so the host that locks decides what the lock holds.
    empty_fake_index.add(
        FakeProject(
            "tool-on-path", "1.0", wheel_requires_if_no_program={"fake-patchelf>=1": "patchelf"}
        ),
        FakeProject("fake-patchelf", "1.0", publish_wheel=True),
    )
    ws = make_workspace(tmp_path / "checkout", empty_fake_index)
    old, new = _patchelf(tmp_path, "0.17.2"), _patchelf(tmp_path, "0.18.0")
    # The sandbox shows the host's system folders; a tool elsewhere is shown on purpose.
    ws.variant(extra=f"sandbox: {{read_only: [{json.dumps(str(old))}, {json.dumps(str(new))}]}}\n")
    ws.write("overrides/fake-patchelf.yaml", "prebuilt: true\n")
    ws.collection(["tool-on-path"])
    host_path = os.environ["PATH"]
    with_old = {"PATH": f"{old}{os.pathsep}{host_path}"}
    with_new = {"PATH": f"{new}{os.pathsep}{host_path}"}

    ok(ws.doit("lock", env=with_old))
    node = ws.nodes()["tool-on-path==1.0"]
    assert node["host_tools"] == {"patchelf": "patchelf 0.17.2"}
    assert node["build_env"] == []  # the host's patchelf did, so nothing was asked for
    assert "host " not in _check(ws, with_old["PATH"])

    # Another host: check stays green (the lock is right) but says what differs.
    checked = _check(ws, with_new["PATH"])
    assert (
        "host      demo/cpu: tool-on-path==1.0: its get_requires hooks looked for patchelf: "
        "'patchelf 0.17.2' when locked, 'patchelf 0.18.0' here"
    ) in checked
    data = json.loads(_check(ws, with_new["PATH"], "--format", "json"))
    assert len(data["locks"][0]["host_tools"]) == 1 and data["ok"] is True

    here = tool_state("patchelf", host_path)
    if here is None:
        # A builder without patchelf is asked for it; the error says why.
        result = ws.doit(env={"PATH": host_path})
        output = result.stdout + result.stderr
        assert result.returncode != 0 and "Traceback" not in output
        assert "get_requires_for_build_wheel asks for fake-patchelf>=1" in output
        assert (
            "when locked, the hooks found patchelf 'patchelf 0.17.2' on PATH; here absent"
        ) in output
        assert "give this host the tools the locking host had" in output

    # Re-locked where patchelf is missing: the hook is asked again (its cached answer
    # was for another host), the lock holds the wheel and says the host had none.
    without = {"PATH": host_path} if here is None else with_new
    ok(ws.cli("lock", "--force", env=without))
    node = ws.nodes()["tool-on-path==1.0"]
    if here is None:
        assert node["host_tools"] == {"patchelf": None}
        assert node["build_env"] == ["fake-patchelf==1.0"]
        assert "'patchelf 0.17.2' here" in _check(ws, with_old["PATH"])
    # A host with the tool asks for less than the lock holds: not drift, it builds.
    ok(ws.doit(env=with_old))
    assert ws.outcomes()["build:cpu:tool-on-path-1.0"] == "built"


ANOTHER_KERNEL = """\
import os

_real = os.uname()
# Another machine of the same kind: same system and architecture, another kernel
# release and build, another host name.
os.uname = lambda: os.uname_result(
    (_real.sysname, "ci-runner-7", "6.18.44-fc", "#1 SMP PREEMPT_DYNAMIC", _real.machine)
)
"""


@pytest.mark.slow
def test_a_forced_relock_on_another_kernel_gives_the_same_bytes_and_rebuilds_nothing(
    workspace: Workspace, tmp_path: Path
) -> None:
    workspace.collection(["app", "lib-c"])
    ok(workspace.doit())
    lock = workspace.root / "lock/demo/cpu"
    before = {p.name: p.read_bytes() for p in sorted(lock.iterdir())}
    shim = tmp_path / "another-kernel"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(ANOTHER_KERNEL)
    elsewhere = {"PYTHONPATH": os.pathsep.join([str(shim), workspace.environ()["PYTHONPATH"]])}
    seen = workspace.run("-c", "import platform; print(platform.release())", env=elsewhere)
    assert ok(seen).stdout.strip() == "6.18.44-fc" != os.uname().release
    relocked = ok(workspace.cli("lock", "--force", env=elsewhere))
    assert "lock demo for cpu: resolving app, lib-c" in relocked.stderr  # really re-locked
    assert {p.name: p.read_bytes() for p in sorted(lock.iterdir())} == before
    ok(workspace.doit(env=elsewhere))
    assert workspace.executed() == []


def test_only_host_build_tools_count_not_the_environment_nor_other_programs(tmp_path: Path) -> None:
    def program(path: Path, says: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\necho '{says}'\n")
        path.chmod(0o755)
        return path

    environment = tmp_path / "env"
    ninja = program(environment / "bin/ninja", "1.11.1")  # a locked wheel's, not the host's
    cmake = program(tmp_path / "host/cmake", "cmake version 3.31.6")
    git = program(tmp_path / "host/git", "git version 2.47.0")
    lookups = {
        "ninja": str(ninja),
        "cmake": str(cmake),
        "git": str(git),  # looked for, but asking for it is no backend's answer
        "patchelf": None,
        str(cmake): str(cmake),  # a path, not a program found on PATH
    }
    assert host_tool_states(lookups, environment) == (
        ("cmake", "cmake version 3.31.6"),
        ("patchelf", None),
    )
