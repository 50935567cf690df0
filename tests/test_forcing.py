"""Forcing and cleaning, end to end: host tools in the build key, rebuild, forget, clean, gc,
and the checkout mutex around the commands that write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ecosystem import FakeProject
from tests.workspace import Workspace, ok


def records(ws: Workspace) -> dict[str, dict[str, Any]]:
    found = {}
    for path in (ws.root / "build" / "cache").glob("*/record.json"):
        data = json.loads(path.read_text())
        found[f"{data['name']}=={data['version']}"] = data
    return found


def fake_tool(folder: Path, name: str, version_line: str) -> Path:
    """An executable that answers ``--version`` like the real tool would."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(0o755)
    return path


def with_path(*folders: Path) -> dict[str, str]:
    return {"PATH": os.pathsep.join([*map(str, folders), os.environ["PATH"]])}


# --- host tools in the build key ------------------------------------------------------


@pytest.mark.slow
def test_a_host_tool_upgrade_rebuilds_and_where_it_lives_does_not(
    workspace: Workspace, tmp_path: Path
) -> None:
    workspace.collection(["lib-a"])
    tools = tmp_path / "tools"
    fake_tool(tools, "cmake", "cmake version 3.20.0")
    ok(workspace.doit(env=with_path(tools)))
    built = records(workspace)
    assert built["lib-a==1.0"]["host_tools"]["cmake"] == "cmake version 3.20.0"
    first_keys = {k: r["build_key"] for k, r in built.items()}

    ok(workspace.doit(env=with_path(tools)))
    assert set(workspace.outcomes().values()) == {"uptodate"}

    # The same cmake installed elsewhere: name and version are the same, so is the key.
    elsewhere = tmp_path / "elsewhere"
    fake_tool(elsewhere, "cmake", "cmake version 3.20.0")
    ok(workspace.doit(env=with_path(elsewhere)))
    assert set(workspace.outcomes().values()) == {"uptodate"}

    time.sleep(0.01)  # a new mtime even on coarse clocks
    fake_tool(tools, "cmake", "cmake version 3.31.6 (upgraded)")
    ok(workspace.doit(env=with_path(tools)))
    assert set(workspace.outcomes().values()) == {"built"}
    # A new entry under a new key; the old one stays for a branch that still has the old cmake.
    entries = [
        json.loads(p.read_text())
        for p in (workspace.root / "build" / "cache").glob("*/record.json")
    ]
    lib_a = {r["build_key"]: r["host_tools"]["cmake"] for r in entries if r["name"] == "lib-a"}
    assert lib_a[first_keys["lib-a==1.0"]] == "cmake version 3.20.0"
    assert sorted(lib_a.values()) == ["cmake version 3.20.0", "cmake version 3.31.6 (upgraded)"]


def test_host_tool_probes_are_remembered_by_binary(tmp_path: Path) -> None:
    from affineur.build import HostTools

    tools = tmp_path / "tools"
    cmake = fake_tool(tools, "cmake", "cmake version 3.20.0")
    asked: list[Path] = []

    def probe(binary: Path) -> str:
        asked.append(binary)
        return subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()

    environ = {"PATH": str(tools)}
    memo = tmp_path / "host-tools.json"
    first = HostTools(memo, environ=environ, probe=probe).fingerprint()
    assert first == {"cmake": "cmake version 3.20.0"} and asked == [cmake.resolve()]
    assert HostTools(memo, environ=environ, probe=probe).fingerprint() == first
    assert len(asked) == 1, "an unchanged binary is not asked again"
    # CC names the compiler a backend uses; the kernel or host name never count.
    fake_tool(tools, "clang", "clang version 18.1.8")
    cc = HostTools(memo, environ={**environ, "CC": "clang -O2"}, probe=probe).fingerprint()
    assert cc == {"cc": "clang version 18.1.8", "cmake": "cmake version 3.20.0"}


# --- rebuild ---------------------------------------------------------------------------


def flagged(ws: Workspace) -> None:
    # Its wheel records CFLAGS, which the build passes through but the build key
    # does not hold: the way a real wheel can differ between two builds of one key.
    assert ws.index is not None
    ws.index.add(FakeProject("flagged", "1.0", read_env=("CFLAGS",)))
    ws.collection(["flagged"])


@pytest.mark.slow
def test_affineur_rebuild_builds_again_and_says_whether_the_wheel_changed(
    workspace: Workspace,
) -> None:
    flagged(workspace)
    ok(workspace.doit(env={"CFLAGS": "-O1"}))
    before = records(workspace)["flagged==1.0"]

    same = ok(workspace.affineur("rebuild", "flagged", env={"CFLAGS": "-O1"}))
    assert "flagged==1.0 (cpu): rebuilt; the wheel is identical" in same.stdout
    again = records(workspace)["flagged==1.0"]
    assert again["build_key"] == before["build_key"]
    assert again["started"] > before["started"], "a real build, not the cache entry"

    differs = ok(
        workspace.affineur("rebuild", "flagged", "--variant", "cpu", env={"CFLAGS": "-O3"})
    )
    assert "flagged==1.0 (cpu): rebuilt; the wheel differs from the previous one" in differs.stdout
    # The published index serves the new wheel, and doit has nothing left to do.
    published = next((workspace.root / "dist/demo/cpu/files").glob("flagged-*.whl"))
    assert (
        published.read_bytes()
        == Path(workspace.root / "build/cache" / before["build_key"] / published.name).read_bytes()
    )
    ok(workspace.doit(env={"CFLAGS": "-O3"}))
    assert set(workspace.outcomes().values()) == {"uptodate"}


def test_rebuild_refuses_an_unknown_package(workspace: Workspace) -> None:
    workspace.collection(["lib-a"])
    ok(workspace.doit("lock"))
    result = workspace.affineur("rebuild", "no-such-thing")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


@pytest.mark.slow
def test_doit_forget_then_doit_builds_again_instead_of_reusing(workspace: Workspace) -> None:
    flagged(workspace)
    ok(workspace.doit(env={"CFLAGS": "-O1"}))
    before = records(workspace)["flagged==1.0"]
    forgot = ok(workspace.doit("forget", "build:cpu:flagged-1.0"))
    assert "forgetting build:cpu:flagged-1.0" in forgot.stdout
    result = ok(workspace.doit(env={"CFLAGS": "-O2"}))
    assert workspace.outcomes()["build:cpu:flagged-1.0"] == "built"
    assert "flagged==1.0 (cpu): rebuilt; the wheel differs" in result.stderr
    assert records(workspace)["flagged==1.0"]["started"] > before["started"]
    ok(workspace.doit(env={"CFLAGS": "-O2"}))
    assert set(workspace.outcomes().values()) == {"uptodate"}


# --- clean and gc ----------------------------------------------------------------------


@pytest.mark.slow
def test_doit_clean_removes_what_the_tasks_made(workspace: Workspace) -> None:
    workspace.collection(["lib-a"])
    ok(workspace.doit())
    lock = workspace.root / "lock/demo/cpu/graph.json"
    locked = lock.read_bytes()
    assert records(workspace) and (workspace.root / "dist/demo/cpu/simple").is_dir()
    cleaned = ok(workspace.doit("clean"))
    assert not records(workspace), cleaned.stdout
    assert not (workspace.root / "dist/demo/cpu").exists()
    assert lock.read_bytes() == locked, "the lock is the checkout's source, never cleaned"
    ok(workspace.doit())
    assert set(workspace.outcomes().values()) == {"built"}


@pytest.mark.slow
def test_gc_lists_then_removes_only_what_no_lock_references(workspace: Workspace) -> None:
    workspace.collection(["lib-a", "app"])
    ok(workspace.doit())
    workspace.collection(["lib-a"])
    ok(workspace.doit())
    stray = workspace.root / "build" / "work" / "dead-build"
    stray.mkdir(parents=True)
    (stray / "junk").write_bytes(b"x" * 5000)

    dry = ok(workspace.affineur("gc"))
    assert "app-1.0" in dry.stdout and "build/work/dead-build" in dry.stdout
    assert "dry run" in dry.stdout and "--yes" in dry.stdout
    assert "app==1.0" in records(workspace) and stray.exists(), "a dry run removes nothing"

    done = ok(workspace.affineur("gc", "--yes"))
    assert "removed" in done.stdout
    assert "app==1.0" not in records(workspace) and "lib-a==1.0" in records(workspace)
    assert not stray.exists()
    assert not list((workspace.root / "build/sdists").glob("app-*"))
    ok(workspace.doit())
    assert set(workspace.outcomes().values()) == {"uptodate"}, "nothing a lock needs was removed"


# --- the checkout mutex ----------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from affineur.run import hold_checkout
with hold_checkout(Path(sys.argv[1])):
    Path(sys.argv[2]).touch()
    time.sleep(120)
"""


@pytest.mark.slow
def test_commands_that_write_wait_for_the_checkout(workspace: Workspace, tmp_path: Path) -> None:
    workspace.collection(["lib-a"])
    ok(workspace.doit("lock"))
    ready = tmp_path / "held"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(workspace.root), str(ready)],
        env=workspace.environ(),
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        busy = {"AFFINEUR_LOCK_TIMEOUT": "0"}
        for argv in (
            ("lock", "--force"),
            ("add", "lib-c", "--collection", "demo"),
            ("remove", "lib-a"),
            ("rebuild", "lib-a"),
        ):
            result = workspace.affineur(*argv, env=busy)
            assert result.returncode == 2, (argv, result.stdout, result.stderr)
            assert "another affineur run holds this checkout" in result.stderr, argv
        assert "lib-c" not in (workspace.root / "collections/demo.toml").read_text()
    finally:
        holder.kill()
        holder.wait()
    ok(workspace.affineur("add", "lib-c", "--collection", "demo"))
