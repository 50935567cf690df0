"""Rendering of the failure report and the build summary (pure, no doit)."""

from __future__ import annotations

from affineur.config import validate
from affineur.errors import AffineurError
from affineur.run import (
    MARKDOWN_LIMIT,
    Failure,
    PackageResult,
    RunSummary,
    Substitute,
    counts,
    counts_line,
    critical_path,
    duration,
    report_json,
    summary_json,
    summary_markdown,
)

SHA = "ab" * 32


def result(
    name: str, outcome: str, seconds: float = 0.0, deps: tuple[str, ...] = ()
) -> PackageResult:
    return PackageResult(
        task=f"build:cpu:{name}-1.0",
        package=name,
        version="1.0",
        variant="cpu",
        outcome=outcome,  # type: ignore[arg-type]
        seconds=seconds,
        deps=tuple(f"build:cpu:{d}-1.0" for d in deps),
        because=("build:cpu:tool-1.0",) if outcome == "skipped" else (),
    )


def sample() -> RunSummary:
    packages = (
        result("setuptools", "uptodate"),
        result("tool", "failed", 2.0, deps=("setuptools",)),
        result("app", "skipped", deps=("tool",)),
        result("broken", "substituted", 1.5, deps=("setuptools",)),
        result("lib", "built", 4.0, deps=("broken",)),
        result("other", "built", 3.0, deps=("setuptools",)),
        result("cached", "reused", 0.1),
    )
    failures = (
        Failure(
            stage="patch",
            error="patch 0001.patch does not apply",
            causes=("Hunk #1 FAILED",),
            package="tool",
            version="1.0",
            variant="cpu",
            task="build:cpu:tool-1.0",
            log="build/logs/cpu/tool-1.0.log",
            log_tail=("=== patch 0001.patch", "Hunk #1 FAILED at 1."),
        ),
        Failure(
            stage="build",
            error="build_wheel failed | exit 1",
            package="broken",
            version="1.0",
            variant="cpu",
            substitute=Substitute("broken-1.0-py3-none-any.whl", SHA),
        ),
    )
    return RunSummary(
        packages=packages,
        failures=failures,
        failed_tasks=("build:cpu:tool-1.0",),
        seconds=75.0,
        started="2026-01-01T00:00:00+00:00",
        test_mode=True,
    )


def test_counts_and_line() -> None:
    s = sample()
    assert counts(s.packages) == {
        "built": 2,
        "reused": 1,
        "remote": 0,
        "uptodate": 1,
        "substituted": 1,
        "failed": 1,
        "skipped": 1,
        "notrun": 0,
    }
    assert counts_line(s) == (
        "7 packages: 2 built, 1 reused from cache, 1 up to date, 1 substituted, "
        "1 failed, 1 skipped, 0 not run in 1m15s"
    )


def test_critical_path_follows_build_env_by_measured_time() -> None:
    path, seconds = critical_path(sample().packages)
    # setuptools (0) -> broken (1.5) -> lib (4.0) beats setuptools -> other (3.0).
    assert path == ("build:cpu:setuptools-1.0", "build:cpu:broken-1.0", "build:cpu:lib-1.0")
    assert seconds == 5.5
    assert critical_path(()) == ((), 0.0)


def test_duration() -> None:
    assert [duration(s) for s in (0.04, 12.34, 62, 3599, 3900)] == [
        "0.0s",
        "12.3s",
        "1m02s",
        "59m59s",
        "1h05m",
    ]


def test_json_documents_match_their_schemas() -> None:
    s = sample()
    report = report_json(s)
    validate(report, "report", file="report.json")
    validate(summary_json(s), "summary", file="summary.json")
    assert [f["package"] for f in report["failures"]] == ["tool", "broken"]
    assert report["failures"][1]["substitute"] == {
        "wheel": "broken-1.0-py3-none-any.whl",
        "sha256": SHA,
    }
    assert [p["task"] for p in report["skipped"]] == ["build:cpu:app-1.0"]
    data = summary_json(s)
    assert data["critical_path"] == {
        "seconds": 5.5,
        "tasks": ["build:cpu:setuptools-1.0", "build:cpu:broken-1.0", "build:cpu:lib-1.0"],
    }
    assert data["counts"]["substituted"] == 1


def test_failure_from_error_keeps_the_structure() -> None:
    exc = AffineurError(
        "the build hook did not finish within 2 s and was killed\nmore",
        package="slow",
        version="1.0",
        stage="timeout",
        causes=("last output",),
    )
    f = Failure.from_error(exc, variant="cpu", task="build:cpu:slow-1.0", log_tail=["x"])
    assert (f.stage, f.package, f.version, f.variant) == ("timeout", "slow", "1.0", "cpu")
    assert f.error == "the build hook did not finish within 2 s and was killed"
    assert f.causes == ("last output",) and f.log_tail == ("x",)
    assert Failure.from_error(AffineurError("x"), default_stage="download").stage == "download"


def test_markdown_summary() -> None:
    text = summary_markdown(sample())
    assert text.startswith("### affineur build (test mode): failed (1 substituted")
    assert "| 2 | 1 | 1 | 1 | 1 | 1 | 0 | 1m15s |" in text
    # A pipe inside an error must not break the table.
    assert "build_wheel failed \\| exit 1" in text
    assert "`broken-1.0-py3-none-any.whl`" in text
    assert "Hunk #1 FAILED at 1." in text  # the log tail, folded in <details>
    assert "- `build:cpu:app-1.0` because `build:cpu:tool-1.0` failed" in text
    assert "**Critical path** (5.5s): build:cpu:setuptools-1.0 → build:cpu:broken-1.0" in text
    assert "\x1b" not in text


def test_markdown_of_a_clean_run_says_passed() -> None:
    clean = RunSummary(packages=(result("a", "built", 1.0), result("b", "uptodate")))
    text = summary_markdown(clean)
    assert text.startswith("### affineur build: passed")
    assert "Failures" not in text and "Skipped" not in text


def test_markdown_fits_a_comment_however_large_the_run() -> None:
    packages = tuple(result(f"pkg{i}", "failed", float(i)) for i in range(5000))
    failures = tuple(
        Failure(stage="build", error="x" * 500, package=f"pkg{i}", log_tail=("y" * 300,) * 40)
        for i in range(5000)
    )
    text = summary_markdown(RunSummary(packages=packages, failures=failures), rows=20)
    assert len(text) <= MARKDOWN_LIMIT + 100
    assert "… and 4980 more" in text


def test_a_failure_before_any_package_ran_is_a_failed_run() -> None:
    load = Failure(stage="config", error="variants/cpu.yaml:2: unknown key 'x'")
    summary = RunSummary(packages=(), failures=(load,))
    assert summary_json(summary)["status"] == "failed"
    assert summary_json(summary)["failures"] == 1
    text = summary_markdown(summary)
    assert text.startswith("### affineur build: failed (1 failure(s) before any package ran)")
    assert "unknown key 'x'" in text


def test_packages_never_started_are_not_run_and_the_run_is_incomplete() -> None:
    summary = RunSummary(packages=(result("a", "built", 1.0), result("b", "notrun")))
    assert summary_json(summary)["status"] == "incomplete"
    text = summary_markdown(summary)
    assert text.startswith("### affineur build: incomplete (1 not run)")
    assert "#### Not run (1): the run stopped before them" in text
    assert "Skipped" not in text
    validate(summary_json(summary), "summary", file="summary.json")
