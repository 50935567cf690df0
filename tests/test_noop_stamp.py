"""The no-op stamp, end to end: a plain ``doit`` with nothing to do answers without
loading its tasks, and only while nothing its answer depends on has changed.

Whether a run took the stamp's answer shows in what it imported (``-X importtime``):
the long way loads the checkout, the stamp's answer never does.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.workspace import Workspace, ok

STAMP = Path(".affineur") / "noop.json"


def doit(ws: Workspace, *args: str, env: dict[str, str] | None = None) -> tuple[bool, str]:
    """Run ``doit``; whether the stamp answered it, and what it printed."""
    result = ws.run("-X", "importtime", "-m", "doit", *args, env=env)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    loaded = set(re.findall(r"^import time:.*\| +([\w.]+)$", result.stderr, re.M))
    assert "affineur.run._noop" in loaded  # the import lines are read right
    # The task creators load the checkout; affineur.run loads modules through
    # import_module, which -X importtime does not show, so look for what they import.
    return "affineur.run._checkout" not in loaded, result.stdout


def shown(stdout: str) -> list[str]:
    """What a run printed, its own duration left out."""
    return [re.sub(r" in [\d.]+m?s$", " in T", line) for line in stdout.splitlines()]


def summary(ws: Workspace) -> dict[str, object]:
    data: dict[str, object] = json.loads((ws.root / "build/reports/summary.json").read_text())
    return {k: v for k, v in data.items() if k not in ("started", "seconds")}


def fake_tool(folder: Path, name: str, version_line: str) -> dict[str, str]:
    """``name`` on PATH, answering ``--version`` like the real tool; the environment for it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(0o755)
    return {"PATH": os.pathsep.join([str(folder), os.environ["PATH"]])}


@pytest.fixture
def built(cold_workspace: Workspace, tmp_path: Path) -> tuple[Workspace, dict[str, str]]:
    """lib-a locked, built and published, with a cmake of our own on PATH (a host tool
    in its key), then one no-op: the first run re-locked, so only the second can vouch."""
    ws = cold_workspace
    env = fake_tool(tmp_path / "tools", "cmake", "cmake version 3.20.0")
    # pytest names the test phase in the environment, which is in the stamp's key.
    env["PYTEST_CURRENT_TEST"] = "test_noop_stamp"
    ws.collection(["lib-a"])
    ok(ws.doit(env=env))
    assert not (ws.root / STAMP).exists()
    ok(ws.doit(env=env))
    return ws, env


def test_a_plain_no_op_is_answered_from_the_stamp_as_the_long_way_answers_it(
    built: tuple[Workspace, dict[str, str]],
) -> None:
    ws, env = built
    assert (ws.root / STAMP).is_file(), "a plain run that left nothing to do writes the stamp"
    (ws.root / STAMP).unlink()
    answered, long_way = doit(ws, env=env)
    assert not answered
    long_summary = summary(ws)
    assert set(ws.outcomes().values()) == {"uptodate"}

    answered, stamped = doit(ws, env=env)
    assert answered
    # What a user sees is the same: the counts line, the reports and their content.
    assert shown(stamped) == shown(long_way)
    assert "1 packages: 0 built, 0 reused from cache, 1 up to date" in stamped
    assert summary(ws) == long_summary
    assert (ws.root / "build/reports/report.json").is_file()
    assert "up to date" in (ws.root / "build/reports/summary.md").read_text()

    # -n only spreads the work, of which there is none: the same stamp answers.
    assert doit(ws, "-n", "2", env=env)[0]
    # A run that names tasks, or forces them, goes the long way.
    assert not doit(ws, "build", env=env)[0]
    assert not doit(ws, "-a", env=env)[0]
    assert not (ws.root / STAMP).exists(), "only a plain run writes the stamp"
    assert not doit(ws, env=env)[0]
    assert doit(ws, env=env)[0]


@pytest.mark.slow
def test_each_input_of_the_up_to_date_answer_defeats_the_stamp(
    built: tuple[Workspace, dict[str, str]], tmp_path: Path
) -> None:
    ws, env = built
    assert doit(ws, env=env)[0]

    def long_way_then_stamp(change: str, **kwargs: str) -> None:
        answered, _ = doit(ws, env={**env, **kwargs})
        assert not answered, change
        assert doit(ws, env={**env, **kwargs})[0], f"{change}: the long way writes a new stamp"

    # A comment in the collection changes no lock and no build, but the file changed.
    collection = ws.root / "collections/demo.toml"
    collection.write_text(collection.read_text() + "# reviewed\n")
    long_way_then_stamp("a collection edited")
    assert set(ws.outcomes().values()) == {"uptodate"}

    lock = ws.root / "lock/demo/cpu/graph.json"
    os.utime(lock)
    long_way_then_stamp("a lock touched")

    wheel = next((ws.root / "dist/demo/cpu/files").glob("lib_a-*.whl"))
    wheel.unlink()
    long_way_then_stamp("a wheel removed from dist")
    assert wheel.is_file(), "the long way publishes the index again"

    long_way_then_stamp("an environment variable set", AFFINEUR_HEARTBEAT="30")

    answered, _ = doit(ws, "test_mode=1", env=env)
    assert not answered, "test_mode=1 is another run"
    assert doit(ws, "test_mode=1", env=env)[0]
    assert json.loads((ws.root / "build/reports/summary.json").read_text())["test_mode"]
    assert not doit(ws, env=env)[0]

    # A new cmake is a new build key: the long way, which builds lib-a again.
    fake_tool(tmp_path / "tools", "cmake", "cmake version 3.31.6 (upgraded)")
    assert not doit(ws, env=env)[0]
    assert ws.outcomes()["build:cpu:lib-a-1.0"] == "built"
    assert doit(ws, env=env)[0]

    ok(ws.doit("forget", "build:cpu:lib-a-1.0", env=env))
    assert not doit(ws, env=env)[0]
    assert ws.outcomes()["build:cpu:lib-a-1.0"] == "built"

    ok(ws.doit("clean", env=env))
    assert not doit(ws, env=env)[0]
    assert set(ws.outcomes().values()) == {"built"}
    assert doit(ws, env=env)[0]


def test_a_failed_run_leaves_no_stamp_and_a_re_lock_writes_none(
    built: tuple[Workspace, dict[str, str]],
) -> None:
    ws, env = built
    assert (ws.root / STAMP).is_file()
    ws.collection(["lib-a", "broken"])
    failed = ws.run("-m", "doit", env=env)
    assert failed.returncode != 0
    assert not (ws.root / STAMP).exists()
    again = ws.run("-X", "importtime", "-m", "doit", env=env)
    assert again.returncode != 0 and "affineur.run._checkout" in again.stderr

    # A run that re-locks changed its own inputs while it ran: it vouches for nothing,
    # and the no-op after it writes the stamp.
    ws.collection(["lib-a"])
    ok(ws.doit(env=env))
    assert not (ws.root / STAMP).exists()
    assert not doit(ws, env=env)[0]
    assert doit(ws, env=env)[0]


def test_a_damaged_stamp_is_no_answer(built: tuple[Workspace, dict[str, str]]) -> None:
    ws, env = built
    (ws.root / STAMP).write_text("{not json")
    assert not doit(ws, env=env)[0]
    assert set(ws.outcomes().values()) == {"uptodate"}
    data = json.loads((ws.root / STAMP).read_text())
    data["files"] = {k: [0, 0, 0, 0] for k in data["files"]}
    (ws.root / STAMP).write_text(json.dumps(data))
    assert not doit(ws, env=env)[0]
