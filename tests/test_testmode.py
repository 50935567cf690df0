"""Test mode end to end through doit: substitutes, skipped dependents, the report, the exit code."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from affineur.config import validate
from affineur.errors import AffineurError
from affineur.run import keep_going_requested
from tests.ecosystem import FakeProject
from tests.workspace import Workspace, ok

# A patch that cannot apply fails a build in stage 2 only: discovery never applies
# patches, so the lock still works and the failure has no upstream wheel to fall back on.
BAD_PATCH = """\
--- a/tool_nowheel/__init__.py
+++ b/tool_nowheel/__init__.py
@@ -1 +1 @@
-this line is not in the file
+nor is this one
"""


def report(ws: Workspace) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ws.root / "build/reports/report.json").read_text())
    validate(data, "report", file="report.json")
    return data


def summary(ws: Workspace) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ws.root / "build/reports/summary.json").read_text())
    validate(data, "summary", file="summary.json")
    return data


def failures(ws: Workspace) -> dict[str, dict[str, Any]]:
    return {f["package"]: f for f in report(ws)["failures"]}


def outcomes(ws: Workspace) -> dict[str, str]:
    return {p["package"]: p["outcome"] for p in summary(ws)["packages"]}


@pytest.fixture
def failing(workspace: Workspace) -> Workspace:
    """broken (upstream wheel), uses-broken (built with broken), broken-nowheel, and
    tool-nowheel (its patch fails) with needs-tool built with it. Not locked yet:
    the first run locks it (discovery never applies patches, so the lock works)."""
    workspace.write("overrides/patches/tool-nowheel/0001-bad.patch", BAD_PATCH)
    workspace.collection(["broken", "uses-broken", "broken-nowheel", "needs-tool", "lib-c"])
    return workspace


def test_test_mode_substitutes_reports_and_fails_the_run(failing: Workspace) -> None:
    ws = failing
    result = ws.doit("test_mode=1", "-n", "2", "-P", "thread")
    assert result.returncode != 0, result.stdout + result.stderr
    # Backends' tracebacks are quoted from their logs; none may come from affineur itself.
    assert "src/affineur/" not in result.stdout + result.stderr

    found = failures(ws)
    assert set(found) == {"broken", "broken-nowheel", "tool-nowheel"}
    broken = found["broken"]
    assert (broken["version"], broken["variant"], broken["stage"]) == ("1.0", "cpu", "build")
    assert broken["task"] == "build:cpu:broken-1.0"
    assert broken["substitute"]["wheel"] == "broken-1.0-py3-none-any.whl"
    assert any("broken on purpose" in line for line in broken["log_tail"])
    assert Path(broken["log"]).name == "broken-1.0.log"
    assert found["broken-nowheel"]["substitute"] is None
    assert found["broken-nowheel"]["stage"] == "build"
    assert found["tool-nowheel"]["stage"] == "patch"
    assert found["tool-nowheel"]["substitute"] is None
    assert [s["task"] for s in report(ws)["skipped"]] == ["build:cpu:needs-tool-1.0"]
    assert report(ws)["skipped"][0]["because"] == ["build:cpu:tool-nowheel-1.0"]

    assert outcomes(ws)["broken"] == "substituted"
    assert outcomes(ws)["uses-broken"] == "built"  # built against the substitute
    assert outcomes(ws)["needs-tool"] == "skipped"
    counts = summary(ws)["counts"]
    assert counts["substituted"] == 1 and counts["failed"] == 2 and counts["skipped"] == 1
    assert counts["built"] == len(summary(ws)["packages"]) - 4

    # The substitute is the index's wheel, hash-checked, cached under broken's own key.
    records = [json.loads(p.read_text()) for p in (ws.root / "build/cache").glob("*/record.json")]
    (record,) = [r for r in records if r["name"] == "broken"]
    assert record["substituted"] is True
    assert record["sha256"] == broken["substitute"]["sha256"]
    assert record["failure"]["stage"] == "build"


@pytest.mark.slow
def test_substitute_is_published_and_never_trusted_later(failing: Workspace) -> None:
    ws = failing
    # Only the substitutable failure: every task runs, so doit alone would exit 0.
    ws.collection(["broken", "uses-broken", "lib-c"])
    result = ws.doit("test_mode=1")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "upstream wheel(s) in place of failed builds" in result.stdout + result.stderr
    page = (ws.root / "dist/demo/cpu/simple/broken/index.html").read_text()
    assert "broken-1.0-py3-none-any.whl" in page
    wheel = ws.root / "dist/demo/cpu/files/broken-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        assert json.loads(zf.read("broken/_build_env.json"))["origin"] == "upstream"
    assert (ws.root / "dist/demo/cpu/simple/uses-broken").is_dir()

    # A second test-mode run tries the real build again and fails again.
    again = ws.doit("test_mode=1")
    assert again.returncode != 0
    assert outcomes(ws)["broken"] == "substituted"
    assert outcomes(ws)["uses-broken"] == "uptodate"

    # Without test mode the substitute is withdrawn and the build fails for real.
    plain = ws.doit()
    assert plain.returncode != 0
    assert outcomes(ws)["broken"] == "failed"
    assert failures(ws)["broken"]["substitute"] is None
    assert not report(ws)["test_mode"]


def test_environment_variable_turns_test_mode_on(failing: Workspace) -> None:
    ws = failing
    ws.collection(["broken", "lib-c"])
    result = ws.doit(env={"AFFINEUR_TEST_MODE": "1"})
    assert result.returncode != 0
    assert report(ws)["test_mode"] is True
    assert outcomes(ws) == {"broken": "substituted", "lib-c": "built", "fakebuild-core": "built"}


def test_without_test_mode_the_first_failure_stops_the_run(failing: Workspace) -> None:
    ws = failing
    result = ws.doit()
    assert result.returncode != 0
    found = failures(ws)
    assert len(found) == 1 and next(iter(found.values()))["substitute"] is None
    assert not (ws.root / "dist/demo/cpu/simple/index.html").exists()
    # What doit never started is "not run", not "skipped because a dependency failed".
    data = summary(ws)
    assert data["status"] == "failed"
    assert data["counts"]["failed"] == 1 and data["counts"]["skipped"] == 0
    assert data["counts"]["notrun"] == len(data["packages"]) - 1 - data["counts"]["built"]
    assert data["counts"]["notrun"] > 0
    assert all(p["because"] == [] for p in data["packages"] if p["outcome"] == "notrun")


@pytest.mark.slow
def test_a_lock_only_run_keeps_the_last_build_summary(workspace: Workspace) -> None:
    workspace.collection(["lib-c"])
    ok(workspace.doit())
    reports = workspace.root / "build/reports"
    before = {p.name: p.read_bytes() for p in reports.iterdir()}
    ok(workspace.doit("lock"))
    assert {p.name: p.read_bytes() for p in reports.iterdir()} == before
    # A lock-only run that fails does write its failure.
    workspace.collection(["conflict-x", "conflict-y"])
    assert workspace.doit("lock").returncode != 0
    assert summary(workspace)["status"] == "failed"
    assert (reports / "summary.md").read_text().startswith("### affineur build: failed")


def test_a_bad_test_mode_value_is_a_clean_error(workspace: Workspace) -> None:
    workspace.collection(["lib-c"])
    result = workspace.doit("test_mode=maybe")
    assert result.returncode != 0
    assert "test_mode=maybe: expected 1 or 0" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_timeout_from_an_override_is_reported_as_its_stage(workspace: Workspace) -> None:
    workspace.index.add(
        FakeProject(
            "slow",
            "1.0",
            summary="build_wheel sleeps a minute",
            build_imports=("sleepy",),
            extra_files={"_backend/sleepy.py": "import time\n\ntime.sleep(60)\n"},
        )
    )
    # One budget for all of a build's hooks (discovery's too), each in a sandbox of
    # its own: long enough to start them all on a loaded machine, far below the sleep.
    workspace.write("overrides/slow.yaml", "timeout: 8\n")
    workspace.collection(["slow"])
    ok(workspace.doit("lock"))
    started = time.monotonic()
    result = workspace.doit()
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    failure = failures(workspace)["slow"]
    assert failure["stage"] == "timeout"
    assert "did not finish within 8 s" in failure["error"]


@pytest.mark.parametrize(
    ("var", "env", "expected"),
    [
        (None, {}, False),
        ("1", {}, True),
        ("0", {"AFFINEUR_TEST_MODE": "1"}, False),
        (None, {"AFFINEUR_TEST_MODE": "yes"}, True),
        (None, {"AFFINEUR_TEST_MODE": ""}, False),
    ],
)
def test_requested(var: str | None, env: dict[str, str], expected: bool) -> None:
    assert keep_going_requested(var, env) is expected


def test_requested_refuses_unknown_values() -> None:
    with pytest.raises(AffineurError, match="AFFINEUR_TEST_MODE=2: expected 1 or 0"):
        keep_going_requested(None, {"AFFINEUR_TEST_MODE": "2"})


def test_a_resolve_failure_while_loading_is_reported(workspace: Workspace) -> None:
    workspace.collection(["conflict-x", "conflict-y"])
    result = workspace.doit("test_mode=1")
    assert result.returncode != 0
    (failure,) = report(workspace)["failures"]
    assert failure["stage"] == "resolve"
    assert any("shared<2" in c for c in failure["causes"])


def test_a_substitution_alone_still_fails_the_run(workspace: Workspace) -> None:
    # Only `broken` fails, it has a substitute, and no publish task is selected:
    # every doit task succeeds, yet the run must not look green.
    workspace.collection(["uses-broken"])
    ok(workspace.doit("lock"))
    result = workspace.doit("test_mode=1", "build")
    assert result.returncode == 1, result.stdout + result.stderr
    assert outcomes(workspace)["broken"] == "substituted"
    assert outcomes(workspace)["uses-broken"] == "built"
