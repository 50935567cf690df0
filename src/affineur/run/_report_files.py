"""The report files of a run: ``build/reports/report.json``, ``summary.json``, ``summary.md``.

Written by the reporter when a run completes, by the dodo when loading fails
(no task runs then, and the report must still say why), and by a run answered
from the no-op stamp, which loads no reporter at all.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

from affineur.atomic import write_atomic
from affineur.errors import AffineurError
from affineur.run._reports import (
    Failure,
    RunSummary,
    report_json,
    summary_json,
    summary_markdown,
)

__all__ = ["write_load_failure", "write_reports"]


def write_reports(summary: RunSummary, folder: Path) -> list[Path]:
    """Write report.json (validated), summary.json and summary.md; return their paths."""
    report, data = report_json(summary), summary_json(summary)
    if report["failures"] or report["skipped"] or report["failed_tasks"]:
        # A run without failures writes a report of constants and a date, whose shape
        # the tests check; validating it would load jsonschema, the largest import a
        # no-op run would otherwise pay for.
        from affineur.config import validate

        validate(report, "report", file=str(folder / "report.json"))
    # The summary is checked against its schema by the tests, not on every run:
    # on a large tree checking it would cost more than the rest of a no-op run.
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        ("report.json", json.dumps(report, indent=2) + "\n"),
        ("summary.json", json.dumps(data, indent=2) + "\n"),
        ("summary.md", summary_markdown(summary)),
    ):
        path = folder / name
        write_atomic(path, text)
        written.append(path)
    return written


def write_load_failure(exc: AffineurError, folder: Path, *, keep_going: bool = False) -> None:
    """Report an error raised while the dodo loads (re-locking: resolve, discovery, ...).

    No task runs then, so the reporter never starts; the report still has to say why.
    """
    failure = Failure.from_error(exc, default_stage="resolve")
    summary = RunSummary(
        packages=(),
        failures=(failure,),
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        test_mode=keep_going,
    )
    # The load error itself is what the user must see; a report that cannot be
    # written must not hide it.
    with contextlib.suppress(AffineurError, OSError):
        write_reports(summary, folder)
