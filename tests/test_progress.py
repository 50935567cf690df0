"""The doit reporter: progress lines, a terminal status line, and reports at the end."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
from doit.exceptions import TaskError, UnmetDependency
from doit.task import Task

from affineur.errors import AffineurError
from affineur.run import ActionFailed, BuildOutcome, RunContext, progress_reporter
from tests.workspace import Workspace, ok

LINE = re.compile(r"^\[\d+/\d+\] \S+ ")


def build_task(name: str, deps: tuple[str, ...] = ()) -> Task:
    return Task(
        f"build:cpu:{name}-1.0",
        actions=[lambda: None],
        task_dep=[f"build:cpu:{d}-1.0" for d in deps],
        meta={"package": {"name": name, "version": "1.0", "variant": "cpu", "key": f"k-{name}"}},
    )


def run_fake(stream: io.StringIO, tmp_path: Path) -> Path:
    """Drive the reporter as doit's runner would, over five packages."""
    context = RunContext()
    recorder = context.recorder
    recorder.record("k-cached", BuildOutcome("reused"))
    tasks = {
        t.name: t
        for t in (
            build_task("base"),
            build_task("cached"),
            build_task("tool", ("base",)),
            build_task("app", ("tool",)),
            build_task("done"),
            Task("build", actions=None, task_dep=["build:cpu:base-1.0"]),  # a group: not counted
        )
    }
    reporter = progress_reporter(context, reports_dir=tmp_path / "reports")(stream, {})
    reporter.initialize(tasks, list(tasks))
    reporter.skip_uptodate(tasks["build:cpu:done-1.0"])
    for name in ("build:cpu:base-1.0", "build:cpu:cached-1.0"):
        reporter.execute_task(tasks[name])
    recorder.record("k-base", BuildOutcome("built"))
    reporter.add_success(tasks["build:cpu:base-1.0"])
    reporter.add_success(tasks["build:cpu:cached-1.0"])
    reporter.execute_task(tasks["build:cpu:tool-1.0"])
    error = AffineurError("patch x.patch does not apply", package="tool", stage="patch")
    reporter.add_failure(tasks["build:cpu:tool-1.0"], ActionFailed("error: ...", error))
    reporter.add_failure(tasks["build:cpu:app-1.0"], UnmetDependency("build:cpu:tool-1.0"))
    reporter.complete_run()
    return tmp_path / "reports"


def test_plain_lines_without_a_terminal(tmp_path: Path) -> None:
    out = io.StringIO()
    reports = run_fake(out, tmp_path)
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text
    lines = text.splitlines()
    # One line per finished package, counted over packages (the up-to-date one first).
    assert lines[0].startswith("[2/5] built cpu:base-1.0 (")
    assert lines[1].startswith("[3/5] reused cpu:cached-1.0 (")
    assert lines[2].startswith("[4/5] FAILED cpu:tool-1.0 (")
    assert lines[2].endswith(": patch x.patch does not apply")
    assert lines[3] == "    error: ..."  # the whole error, under the failure's line
    assert lines[4] == "[5/5] skipped cpu:app-1.0: cpu:tool-1.0 failed"
    assert not any(line.startswith(".  ") for line in lines)
    counts = (
        "1 built, 1 reused from cache, 1 up to date, 0 substituted, 1 failed, 1 skipped, 0 not run"
    )
    assert lines[5].startswith(f"5 packages: {counts} in ")
    report = json.loads((reports / "report.json").read_text())
    assert [(f["package"], f["stage"], f["task"]) for f in report["failures"]] == [
        ("tool", "patch", "build:cpu:tool-1.0")
    ]
    assert report["failed_tasks"] == ["build:cpu:tool-1.0"]
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["counts"] == {
        "built": 1,
        "reused": 1,
        "remote": 0,
        "uptodate": 1,
        "substituted": 0,
        "failed": 1,
        "skipped": 1,
        "notrun": 0,
    }
    assert (reports / "summary.md").read_text().startswith("### affineur build: failed")
    # What was built is remembered for the next run's estimate, by variant and name.
    durations = json.loads((reports / "durations.json").read_text())
    assert set(durations) == {"cpu:base"}


def test_a_substitution_says_why(tmp_path: Path) -> None:
    from affineur.run import Failure, Substitute

    out = io.StringIO()
    context = RunContext()
    task = build_task("broken")
    failure = Failure(
        stage="build",
        error="the build_wheel hook failed",
        log="build/logs/cpu/broken-1.0.log",
        substitute=Substitute(wheel="broken-1.0-py3-none-any.whl", sha256="0" * 64),
    )
    context.recorder.record("k-broken", BuildOutcome("substituted", failure))
    reporter = progress_reporter(context, reports_dir=tmp_path)(out, {})
    reporter.initialize({task.name: task}, [task.name])
    reporter.execute_task(task)
    reporter.add_success(task)
    line = out.getvalue().splitlines()[0]
    assert line.startswith("[1/1] substituted cpu:broken-1.0 (")
    assert line.endswith(
        ": failed at build (the build_wheel hook failed), the upstream wheel of the same"
        " version stands in; log: build/logs/cpu/broken-1.0.log"
    )


def test_a_crash_is_a_failure_of_its_task(tmp_path: Path) -> None:
    out = io.StringIO()
    task = build_task("boom")
    reporter = progress_reporter(RunContext(), reports_dir=tmp_path)(out, {})
    reporter.initialize({task.name: task}, [task.name])
    reporter.execute_task(task)
    reporter.add_failure(task, TaskError("PythonAction Error\nValueError: nope"))
    summary = reporter.summary()
    assert [(f.stage, f.error, f.package) for f in summary.failures] == [
        ("internal", "PythonAction Error", "boom")
    ]


@pytest.mark.slow
def test_doit_run_in_parallel_shows_progress_and_writes_reports(workspace: Workspace) -> None:
    workspace.collection(["app"])
    ok(workspace.doit("lock"))
    result = ok(workspace.doit("-n", "3", "-P", "thread"))
    assert "\x1b" not in result.stdout + result.stderr and "\r" not in result.stdout
    lines = [line for line in result.stdout.splitlines() if LINE.match(line)]
    total = int(re.match(r"^\[\d+/(\d+)\]", lines[0]).group(1))  # type: ignore[union-attr]
    assert any(line.startswith(f"[{total}/{total}] ") for line in lines)
    assert any(" built cpu:app-1.0 (" in line for line in lines)
    assert len(lines) == total  # one line per package, nothing for lock, download, publish
    summary = json.loads((workspace.root / "build/reports/summary.json").read_text())
    packages = len(summary["packages"])
    assert summary["counts"]["built"] == packages > 3
    assert f"{packages} packages: {packages} built, 0 reused" in result.stdout
    assert summary["critical_path"]["tasks"][-1] == "build:cpu:app-1.0"
    assert (workspace.root / "build/reports/summary.md").is_file()

    ok(workspace.doit())
    assert set(workspace.outcomes().values()) == {"uptodate"}
    assert len(workspace.outcomes()) == packages

    # Another checkout state that lost doit's memory but kept the cache reuses every build.
    shutil.rmtree(workspace.root / ".affineur" / "doit-state")
    ok(workspace.doit("-n", "2"))
    assert set(workspace.outcomes().values()) == {"reused"}
    assert len(workspace.outcomes()) == packages


# --- typed progress events ---------------------------------------------------------------


def test_each_event_reads_as_the_line_people_know() -> None:
    from affineur.progress import (
        BuildFinished,
        BuildStarted,
        Downloading,
        LockFinished,
        LockStale,
        LockStarted,
        MetadataFound,
        Notice,
        Published,
        describe,
    )

    lines = {
        LockStarted("web", "cpu", ("requests", "idna")): (
            "lock web for cpu: resolving requests, idna"
        ),
        LockFinished("web", "cpu", 7, 5): "locked web for cpu: 7 packages, 5 installed",
        LockStale("web", "cpu"): "lock web/cpu is stale: re-locking",
        Downloading("idna-3.7.tar.gz"): "download idna-3.7.tar.gz",
        MetadataFound("idna", "3.7", "backend"): "idna==3.7: metadata from the build backend",
        BuildStarted("idna", "3.7", "cpu", "k"): "build idna==3.7 (cpu)",
        BuildFinished("idna", "3.7", "cpu", "k", "built", wheel="idna-3.7-py3-none-any.whl"): (
            "built idna-3.7-py3-none-any.whl"
        ),
        BuildFinished("idna", "3.7", "cpu", "k", "reused"): None,
        Published("web", "cpu", Path("dist/web/cpu/simple"), 5): (
            "published 5 wheels to dist/web/cpu/simple"
        ),
        Notice("remote cache is down", warning=True): "warning: remote cache is down",
    }
    assert {event: describe(event) for event in lines} == lines


def test_the_stream_reporter_keeps_details_for_verbose_runs() -> None:
    from affineur.progress import MetadataFound, StreamReporter

    event = MetadataFound("idna", "3.7", "wheel", "idna-3.7-py3-none-any.whl")
    quiet, loud = io.StringIO(), io.StringIO()
    StreamReporter(quiet).report(event)
    StreamReporter(loud, verbose=True).report(event)
    assert quiet.getvalue() == ""
    assert loud.getvalue().endswith("idna==3.7: metadata from idna-3.7-py3-none-any.whl\n")


def test_the_recorder_turns_build_events_into_report_data() -> None:
    from affineur.progress import BuildFinished

    recorder = RunContext().recorder
    error = AffineurError("hook failed", stage="hook", causes=("line 1",))
    recorder.report(
        BuildFinished(
            "tool",
            "1.0",
            "cpu",
            "k-tool",
            "substituted",
            wheel="tool-1.0-py3-none-any.whl",
            substitute_sha256="ab" * 32,
            error=error,
            notes=("more",),
            log_tail=("last",),
        )
    )
    recorder.report(BuildFinished("lib", "2.0", "cpu", "k-lib", "prebuilt"))
    tool = recorder.get("k-tool")
    assert tool is not None and tool.outcome == "substituted" and tool.failure is not None
    failure = tool.failure
    assert (failure.package, failure.version, failure.stage) == ("tool", "1.0", "hook")
    assert tool.failure.causes == ("line 1", "more") and tool.failure.log_tail == ("last",)
    assert tool.failure.substitute is not None
    assert tool.failure.substitute.wheel == "tool-1.0-py3-none-any.whl"
    lib = recorder.get("k-lib")
    assert lib is not None and lib.outcome == "built" and lib.failure is None
