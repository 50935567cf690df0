"""What a build run did, as data: the failure report and the build summary.

The doit reporter (:mod:`affineur.doitreporter`) collects these while tasks run;
everything here is pure: models, counting, the critical path, and rendering to
JSON (``build/reports/report.json``, ``summary.json``) and Markdown
(``summary.md``, short enough for a pull-request comment). The only state is
:class:`RunRecorder`, which build actions on worker threads write into, so it
takes a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from affineur.errors import AffineurError

if TYPE_CHECKING:
    from affineur.progress import Event

__all__ = [
    "MARKDOWN_LIMIT",
    "OUTCOMES",
    "BuildOutcome",
    "Failure",
    "Outcome",
    "PackageResult",
    "RunRecorder",
    "RunSummary",
    "Status",
    "Substitute",
    "counts",
    "counts_line",
    "critical_path",
    "duration",
    "report_json",
    "status",
    "summary_json",
    "summary_markdown",
]

Outcome = Literal[
    "built", "reused", "remote", "uptodate", "substituted", "failed", "skipped", "notrun"
]
OUTCOMES: tuple[Outcome, ...] = (
    "built",
    "reused",
    "remote",
    "uptodate",
    "substituted",
    "failed",
    "skipped",
    "notrun",
)
Status = Literal["passed", "failed", "incomplete"]
# Shown in the one-line and Markdown counts only when it happened: most checkouts
# have no remote cache, and a column of zeros would only be noise to them.
_QUIET_WHEN_ZERO: frozenset[Outcome] = frozenset({"remote"})

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Substitute:
    """The upstream wheel that stands in for a failed build (test mode only)."""

    wheel: str
    sha256: str


@dataclass(frozen=True)
class Failure:
    """One failure, located and classified; ``substitute`` is set when test mode replaced it."""

    stage: str
    error: str
    causes: tuple[str, ...] = ()
    package: str | None = None
    version: str | None = None
    variant: str | None = None
    task: str | None = None
    log: str | None = None
    log_tail: tuple[str, ...] = ()
    substitute: Substitute | None = None

    @classmethod
    def from_error(
        cls,
        exc: AffineurError,
        *,
        default_stage: str = "internal",
        variant: str | None = None,
        task: str | None = None,
        log: str | None = None,
        log_tail: Sequence[str] = (),
    ) -> Failure:
        # The error line is the message alone: package and version have their own fields.
        return cls(
            stage=exc.stage or default_stage,
            error=exc.message.splitlines()[0] if exc.message else "failed",
            causes=tuple(exc.causes),
            package=exc.package,
            version=exc.version,
            variant=variant,
            task=task,
            log=log,
            log_tail=tuple(log_tail),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "version": self.version,
            "variant": self.variant,
            "task": self.task,
            "stage": self.stage,
            "error": self.error,
            "causes": list(self.causes),
            "log": self.log,
            "log_tail": list(self.log_tail),
            "substitute": None
            if self.substitute is None
            else {"wheel": self.substitute.wheel, "sha256": self.substitute.sha256},
        }


@dataclass(frozen=True)
class BuildOutcome:
    """What a build action itself knows and doit cannot see: cache reuse, substitution."""

    outcome: Literal["built", "reused", "remote", "failed", "substituted"]
    failure: Failure | None = None


class RunRecorder:
    """Build outcomes by build key, written from doit's worker threads.

    A :class:`~affineur.progress.Reporter`: it keeps what every
    :class:`~affineur.progress.BuildFinished` says, as report data.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._builds: dict[str, BuildOutcome] = {}

    def report(self, event: Event) -> None:
        # Imported here: a run answered by the no-op stamp writes reports, and
        # never needs the events (whose module is a good part of its imports).
        from affineur.progress import BuildFinished

        if not isinstance(event, BuildFinished):
            return
        failure = None
        if event.error is not None:
            failure = Failure.from_error(
                event.error,
                default_stage="build",
                variant=event.variant,
                log=str(event.log) if event.log else None,
                log_tail=event.log_tail,
            )
            failure = replace(
                failure,
                package=failure.package or event.name,
                version=failure.version or event.version,
                causes=(*failure.causes, *event.notes),
            )
            if event.outcome == "substituted" and event.wheel and event.substitute_sha256:
                failure = replace(
                    failure, substitute=Substitute(event.wheel, event.substitute_sha256)
                )
        # A prebuilt package's task is "built" in the reports, marked prebuilt by its task.
        outcome = "built" if event.outcome == "prebuilt" else event.outcome
        self.record(event.key, BuildOutcome(outcome, failure))

    def record(self, key: str, outcome: BuildOutcome) -> None:
        with self._lock:
            self._builds[key] = outcome

    def get(self, key: str) -> BuildOutcome | None:
        with self._lock:
            return self._builds.get(key)


@dataclass(frozen=True)
class PackageResult:
    """One build task's fate in this run; ``deps`` are the build tasks of its build environment."""

    task: str
    package: str
    version: str
    variant: str
    outcome: Outcome
    seconds: float = 0.0
    deps: tuple[str, ...] = ()
    because: tuple[str, ...] = ()
    """For a skipped package: the failed tasks it waited for (directly or through others)."""
    prebuilt: bool = False
    """Taken as the upstream wheel on purpose (``prebuilt: true``), not built here."""

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "package": self.package,
            "version": self.version,
            "variant": self.variant,
            "outcome": self.outcome,
            "seconds": round(self.seconds, 3),
            "because": list(self.because),
            "prebuilt": self.prebuilt,
        }


@dataclass(frozen=True)
class RunSummary:
    packages: tuple[PackageResult, ...]
    failures: tuple[Failure, ...] = ()
    failed_tasks: tuple[str, ...] = ()
    """Every task doit saw fail, packages or not (lock, download, publish)."""
    seconds: float = 0.0
    started: str = ""
    test_mode: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


def counts(packages: Iterable[PackageResult]) -> dict[Outcome, int]:
    out: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)
    for p in packages:
        out[p.outcome] += 1
    return out


def _shown(c: Mapping[Outcome, int]) -> list[Outcome]:
    return [o for o in OUTCOMES if c[o] or o not in _QUIET_WHEN_ZERO]


def counts_line(summary: RunSummary) -> str:
    c = counts(summary.packages)
    text = ", ".join(f"{c[o]} {_LABEL[o]}" for o in _shown(c))
    prebuilt = sum(1 for p in summary.packages if p.prebuilt)
    taken = f" ({prebuilt} prebuilt: upstream wheels by choice)" if prebuilt else ""
    return f"{len(summary.packages)} packages: {text}{taken} in {duration(summary.seconds)}"


_LABEL: dict[Outcome, str] = {
    "built": "built",
    "reused": "reused from cache",
    "remote": "reused from remote cache",
    "uptodate": "up to date",
    "substituted": "substituted",
    "failed": "failed",
    "skipped": "skipped",
    "notrun": "not run",
}


def critical_path(packages: Iterable[PackageResult]) -> tuple[tuple[str, ...], float]:
    """The chain of build-environment dependencies with the largest summed time.

    Builds along it ran one after the other whatever the parallelism, so it
    bounds the run's wall time from below; it is where speeding up pays.
    """
    by_task = {p.task: p for p in packages}
    best: dict[str, tuple[float, tuple[str, ...]]] = {}

    def longest(task: str, path: frozenset[str]) -> tuple[float, tuple[str, ...]]:
        if task in best:
            return best[task]
        here = by_task[task]
        chain: tuple[float, tuple[str, ...]] = (0.0, ())
        for dep in here.deps:
            # A lock is acyclic; the guard only keeps a malformed graph from recursing forever.
            if dep in by_task and dep not in path:
                candidate = longest(dep, path | {task})
                if candidate[0] > chain[0] or (candidate[0] == chain[0] and not chain[1]):
                    chain = candidate
        best[task] = (chain[0] + here.seconds, (*chain[1], task))
        return best[task]

    result: tuple[float, tuple[str, ...]] = (0.0, ())
    for task in sorted(by_task):
        candidate = longest(task, frozenset())
        if candidate[0] > result[0]:
            result = candidate
    return result[1], result[0]


def duration(seconds: float) -> str:
    """``0.4s``, ``12.3s``, ``1m02s``, ``1h05m``: short, and readable in a table."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


# --- JSON ---------------------------------------------------------------------------------


def report_json(summary: RunSummary) -> dict[str, Any]:
    """The failure report: every failure, substituted or not, and what was skipped for them."""
    return {
        "format": FORMAT_VERSION,
        "started": summary.started,
        "test_mode": summary.test_mode,
        "failures": [f.to_json() for f in summary.failures],
        "skipped": [p.to_json() for p in summary.packages if p.outcome == "skipped"],
        "failed_tasks": sorted(summary.failed_tasks),
    }


def summary_json(summary: RunSummary) -> dict[str, Any]:
    path, seconds = critical_path(summary.packages)
    return {
        "format": FORMAT_VERSION,
        "status": status(summary),
        "failures": len(summary.failures),
        "started": summary.started,
        "seconds": round(summary.seconds, 3),
        "test_mode": summary.test_mode,
        "counts": dict(counts(summary.packages)),
        "packages": [p.to_json() for p in sorted(summary.packages, key=lambda p: p.task)],
        "critical_path": {"seconds": round(seconds, 3), "tasks": list(path)},
        "failed_tasks": sorted(summary.failed_tasks),
    }


# --- Markdown -----------------------------------------------------------------------------

# GitHub refuses comments over 65536 characters; stay well under with room for a header.
MARKDOWN_LIMIT = 60_000


def _cell(text: str, width: int = 160) -> str:
    one = " ".join(text.split()).replace("|", "\\|")
    return one if len(one) <= width else one[: width - 1] + "…"


def _more(shown: int, total: int) -> list[str]:
    return [f"\n… and {total - shown} more (see the JSON report)"] if total > shown else []


def summary_markdown(summary: RunSummary, *, rows: int = 20, tails: int = 5) -> str:
    """A PR-comment-sized summary: counts, failures, skipped, slowest builds, critical path.

    ``rows`` caps every table and list; ``tails`` is how many failures show their log tail.
    """
    c = counts(summary.packages)
    mode = " (test mode)" if summary.test_mode else ""
    out = [f"### affineur build{mode}: {_status_text(summary)}", ""]
    shown = _shown(c)
    out += ["| " + " | ".join(_LABEL[o] for o in shown) + " | time |"]
    out += ["|" + "---:|" * (len(shown) + 1)]
    out += ["| " + " | ".join(str(c[o]) for o in shown) + f" | {duration(summary.seconds)} |"]
    if summary.failures:
        out += ["", "#### Failures", "", "| package | variant | stage | error | substitute |"]
        out += ["|---|---|---|---|---|"]
        for f in summary.failures[:rows]:
            who = f"{f.package} {f.version or ''}".strip() if f.package else (f.task or "?")
            sub = f"`{f.substitute.wheel}`" if f.substitute else "none"
            out.append(
                f"| {_cell(who, 60)} | {f.variant or ''} | {f.stage} | {_cell(f.error)} | {sub} |"
            )
        out += _more(min(rows, len(summary.failures)), len(summary.failures))
        for f in [f for f in summary.failures if f.log_tail][:tails]:
            who = f"{f.package} {f.version or ''}".strip() if f.package else (f.task or "?")
            out += ["", f"<details><summary>{who}: last lines of the log</summary>", ""]
            out += ["```", *(_cell(line, 200) for line in f.log_tail[-15:]), "```", "</details>"]
    skipped = sorted((p for p in summary.packages if p.outcome == "skipped"), key=lambda p: p.task)
    if skipped:
        out += ["", f"#### Skipped ({len(skipped)}): a dependency failed", ""]
        out += [
            f"- `{p.task}` because {', '.join(f'`{b}`' for b in p.because) or 'a dependency'} "
            "failed"
            for p in skipped[:rows]
        ]
        out += _more(min(rows, len(skipped)), len(skipped))
    notrun = sorted(p.task for p in summary.packages if p.outcome == "notrun")
    if notrun:
        out += ["", f"#### Not run ({len(notrun)}): the run stopped before them", ""]
        out += [", ".join(f"`{t}`" for t in notrun[:rows])]
        out += _more(min(rows, len(notrun)), len(notrun))
    timed = sorted(
        (p for p in summary.packages if p.outcome in ("built", "substituted", "failed")),
        key=lambda p: (-p.seconds, p.task),
    )
    if timed:
        out += ["", "#### Slowest builds", "", "| package | outcome | time |", "|---|---|---:|"]
        out += [f"| `{p.task}` | {p.outcome} | {duration(p.seconds)} |" for p in timed[:rows]]
        out += _more(min(rows, len(timed)), len(timed))
    path, seconds = critical_path(summary.packages)
    if len(path) > 1 and seconds > 0:
        out += ["", f"**Critical path** ({duration(seconds)}): " + " → ".join(path)]
    text = "\n".join(out) + "\n"
    if len(text) > MARKDOWN_LIMIT:
        text = text[:MARKDOWN_LIMIT] + "\n\n… (cut to fit a comment; see summary.json)\n"
    return text


def status(summary: RunSummary) -> Status:
    """failed when anything failed (a build, a lock, loading the config, publishing);
    incomplete when nothing failed but some packages never ran (an interrupted run)."""
    c = counts(summary.packages)
    if c["substituted"] or c["failed"] or summary.failed_tasks or summary.failures:
        return "failed"
    if c["notrun"]:
        return "incomplete"
    return "passed"


def _status_text(summary: RunSummary) -> str:
    # A substitute keeps the tree usable, but the run still failed: the exit code agrees.
    c = counts(summary.packages)
    verdict = status(summary)
    if c["substituted"]:
        return f"{verdict} ({c['substituted']} substituted by upstream wheels)"
    if verdict == "failed" and summary.failures and not summary.packages:
        return f"{verdict} ({len(summary.failures)} failure(s) before any package ran)"
    if verdict == "incomplete":
        return f"{verdict} ({c['notrun']} not run)"
    return verdict
