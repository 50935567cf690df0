"""doit's reporter for affineur runs: progress a person can follow, and the reports at the end.

It counts packages (build tasks), not doit's tasks. In a terminal it drives the
live display of :mod:`affineur.run._live` (a bar over packages with an estimate
of the time left, the running builds with their latest log line, failures and
substitutions pinned above). Elsewhere it prints one line per finished package::

    [12/40] built cpu:foo-1.0 (3.2s)
    [13/40] FAILED cpu:bar-2.0 (1.1s): the build_wheel hook of setuptools failed (...)
        error: ...                      (the whole error, then its log's path)
        log: build/logs/cpu/bar-2.0.log

and, every minute (``AFFINEUR_HEARTBEAT`` seconds; 0 turns it off), each build
still running with how long it has run and its log's last line::

    still building cpu:numpy-2.1.3 (12m0s): [411/597] Compiling C object ...

Lock, download and publish tasks print only when they fail. When the run
completes it writes ``build/reports/summary.md``, ``summary.json``,
``report.json`` and the build durations the next run's estimate uses, and prints
the counts.

doit only sees success, failure, up to date and "not run, a dependency
failed"; whether a build reused a cache entry or was substituted by an upstream
wheel comes from the :class:`~affineur.run._reports.RunRecorder` of the run's
:class:`~affineur.run._doit.RunContext`, which the build actions write into,
looked up by the build key each build task carries in ``meta["package"]``. A
failed action returns an :class:`~affineur.run._doit.ActionFailed`, which carries
the structured error, so the report never parses messages.

doit instantiates the reporter class itself, so :func:`progress_reporter` binds
the run context and the report folder into a subclass for ``DOIT_CONFIG["reporter"]``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from affineur.errors import AffineurError
from affineur.run._context import RunContext
from affineur.run._doit import ActionFailed, BaseFail, UnmetDependency
from affineur.run._report_files import write_reports
from affineur.run._reports import (
    Failure,
    Outcome,
    PackageResult,
    RunSummary,
    counts_line,
    duration,
)

if TYPE_CHECKING:
    from affineur.run._live import Durations, LiveView

__all__ = ["ProgressReporter", "progress_reporter"]

# The stage a failure gets when its error names none, by task group.
_DEFAULT_STAGE = {"lock": "resolve", "download": "download", "build": "build"}
DURATIONS = "durations.json"
HEARTBEAT_ENV = "AFFINEUR_HEARTBEAT"
# A CI log that says nothing for twenty minutes looks like a hung build (and some CI
# systems kill a job that prints nothing for ten): a line a minute says otherwise.
DEFAULT_HEARTBEAT = 60.0


def heartbeat_interval(environ: Mapping[str, str]) -> float:
    """Seconds between "still building" lines outside a terminal (0: none)."""
    raw = environ.get(HEARTBEAT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_HEARTBEAT
    except ValueError:
        raise AffineurError(
            f"{HEARTBEAT_ENV}={raw!r} is not a number of seconds",
            hint=f"unset it, or give seconds between progress lines (0 turns them off): "
            f"{HEARTBEAT_ENV}=60",
            stage="config",
        ) from None
    return max(value, 0.0)


def _title(name: str) -> str:
    """``build:cpu:foo-1.0`` -> ``build cpu:foo-1.0``: the group, then what a person types."""
    group, _, rest = name.partition(":")
    return f"{group} {rest}" if rest else group


def _label(name: str) -> str:
    """``build:cpu:foo-1.0`` -> ``cpu:foo-1.0``: a package as the progress shows it."""
    return name.partition(":")[2] or name


def _package(task: Any) -> Mapping[str, str] | None:
    info = (task.meta or {}).get("package")
    return info if isinstance(info, Mapping) and "key" in info else None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class ProgressReporter:
    """See the module docstring. Worker threads call :meth:`execute_task`, hence the lock."""

    desc = "affineur progress and build reports"
    context: ClassVar[RunContext] = RunContext()
    reports_dir: ClassVar[Path | None] = None
    heartbeat: ClassVar[float] = DEFAULT_HEARTBEAT

    def __init__(self, outstream: TextIO, options: Mapping[str, Any]) -> None:
        # doit's reporter interface, implemented here rather than inherited from its
        # console reporter, whose attributes are not an API.
        self.outstream = outstream
        self.failures: list[dict[str, Any]] = []
        self.runtime_errors: list[str] = []
        self._lock = threading.RLock()
        self.tty = _isatty(outstream)
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.tasks: dict[str, Any] = {}
        self.total = 0
        self.done: set[str] = set()
        self.running: dict[str, float] = {}
        self.results: dict[str, PackageResult] = {}
        self.package_failures: list[Failure] = []
        self.failed_tasks: list[str] = []
        self.packages: dict[str, Mapping[str, str]] = {}
        """The package tasks of the run: the progress counts these, not doit's tasks."""
        self.finished_packages = 0
        # Loaded with the reporter, not with this module: a run answered by the no-op
        # stamp writes its reports through write_reports alone.
        from affineur.run._live import Durations

        self.durations: Durations = Durations(
            self.reports_dir / DURATIONS if self.reports_dir else None
        )
        self.view: LiveView | None = None
        self._stopped = threading.Event()

    # --- doit's reporter interface -----------------------------------------------------

    def initialize(self, tasks: Mapping[str, Any], selected_tasks: list[str]) -> None:
        with self._lock:
            todo, seen = list(selected_tasks), set()
            while todo:
                name = todo.pop()
                if name in seen or name not in tasks:
                    continue
                seen.add(name)
                task = tasks[name]
                todo += [*task.task_dep, *task.setup_tasks]
            self.tasks = {n: tasks[n] for n in seen if self._counted(tasks[n])}
            self.total = len(self.tasks)
            self.packages = {
                n: info for n, t in self.tasks.items() if (info := _package(t)) is not None
            }
            if self.tty:
                from affineur.run._live import LiveView

                self.view = LiveView(
                    self.outstream,
                    total=len(self.packages),
                    durations=self.durations,
                    workers=self.context.workers,
                    log_of=self._running_log,
                )
                self.view.waiting = {n: _duration_key(i) for n, i in self.packages.items()}
                self.view.start()
            elif self.packages and self.heartbeat > 0:
                threading.Thread(
                    target=self._heartbeat, args=(self.heartbeat,), name="heartbeat", daemon=True
                ).start()

    def _heartbeat(self, interval: float) -> None:
        """Outside a terminal: every ``interval`` seconds, the builds running that long."""
        from affineur.run._live import last_line

        while not self._stopped.wait(interval):
            with self._lock:
                now = time.monotonic()
                lines = []
                for name, began in sorted(self.running.items()):
                    if name not in self.packages or now - began < interval:
                        continue
                    last = last_line(self._running_log(name))
                    line = f"still building {_label(name)} ({duration(now - began)})"
                    lines.append(f"{line}: {last}" if last else line)
                if lines and not self._stopped.is_set():
                    self._emit(lines)

    def execute_task(self, task: Any) -> None:
        with self._lock:
            if task.name not in self.tasks:
                return
            self.running[task.name] = time.monotonic()
            info = self.packages.get(task.name)
            if self.view is not None and info is not None:
                self.view.began(task.name, _label(task.name), _duration_key(info))

    def add_success(self, task: Any) -> None:
        with self._lock:
            if task.name not in self.tasks:
                return
            seconds = self._finish(task.name)
            info = _package(task)
            if info is None:
                return  # lock, download, publish: only their failures are news
            known = self.context.recorder.get(info["key"])
            outcome: Outcome = known.outcome if known else "built"
            self._result(task, outcome, seconds)
            if known is not None and known.failure is not None:
                failure = replace(known.failure, task=task.name)
                self.package_failures.append(failure)
                # Test mode went on with an upstream wheel: say why, and where the log is.
                self._package_line(
                    task.name, "substituted", seconds, _substitution(failure), failed=True
                )
                return
            self._package_line(task.name, outcome, seconds)

    def add_failure(self, task: Any, fail: BaseFail) -> None:
        with self._lock:
            if fail.report:
                self.failures.append({"task": task, "exception": fail})
            if task.name not in self.tasks:
                return
            seconds = self._finish(task.name)
            if isinstance(fail, UnmetDependency):
                because = self._root_failures(str(fail.message).split())
                if _package(task) is not None:
                    self._result(task, "skipped", 0.0, because)
                    failed = ", ".join(_label(b) for b in because)
                    self._package_line(task.name, "skipped", None, f"{failed} failed")
                return
            self.failed_tasks.append(task.name)
            failure = self._failure(task, fail)
            if failure is not None:
                self.package_failures.append(failure)
            if _package(task) is not None:
                self._result(task, "failed", seconds)
            error = failure.error if failure else str(fail.message).strip().splitlines()[0]
            # The whole error (causes, hint) belongs next to the failure, with its log.
            text = fail.message if isinstance(fail, ActionFailed) else fail.get_msg()
            body = [f"    {line}" for line in str(text).strip().splitlines()]
            if failure is not None and failure.log:
                body.append(f"    log: {failure.log}")
            if task.name in self.packages:
                self._package_line(task.name, "FAILED", seconds, error, failed=True, body=body)
            else:
                self._emit([f"FAILED {_title(task.name)}: {error}", *body], failed=True)

    def _root_failures(self, deps: list[str]) -> tuple[str, ...]:
        """The failed tasks behind ``deps``: a dependency that was itself skipped
        stands for the failures it was skipped for."""
        found: dict[str, None] = {}
        for dep in deps:
            skipped = self.results.get(dep)
            if skipped is not None and skipped.outcome == "skipped" and skipped.because:
                found.update(dict.fromkeys(skipped.because))
            else:
                found[dep] = None
        return tuple(found)

    def skip_uptodate(self, task: Any) -> None:
        with self._lock:
            if task.name not in self.tasks:
                return
            self.done.add(task.name)
            if _package(task) is not None:
                self._result(task, "uptodate", 0.0)
                self._count(task.name)

    def skip_ignore(self, task: Any) -> None:
        with self._lock:
            if task.name not in self.tasks:
                return
            self.done.add(task.name)
            if _package(task) is not None:
                self._result(task, "skipped", 0.0, ("ignored",))
                self._count(task.name)

    def get_status(self, task: Any) -> None:
        pass

    def teardown_task(self, task: Any) -> None:
        pass

    def cleanup_error(self, exception: BaseFail) -> None:
        self.write(str(exception.get_msg()))

    def runtime_error(self, msg: str) -> None:
        # Shown after the task failures, when the run completes.
        self.runtime_errors.append(msg)

    def write(self, text: str) -> None:
        self.outstream.write(text)

    def complete_run(self) -> None:
        self._stopped.set()
        with self._lock:
            if self.view is not None:
                self.view.stop()
                self.view = None
            self._captured_output()
            summary = self.context.summary = self.summary()
            self.durations.save(
                {
                    _duration_key(self.packages[r.task]): r.seconds
                    for r in summary.packages
                    if r.outcome == "built" and r.task in self.packages
                }
            )
            if summary.failures:
                self.context.failed = True
            self.write(f"{counts_line(summary)}\n")
            # A run without package tasks (``doit lock``) that went well says nothing
            # about builds: the last build's summary stays. Any failure is written.
            has_packages = any(_package(t) is not None for t in self.tasks.values())
            if not has_packages and not summary.failures and not summary.failed_tasks:
                return
            if self.reports_dir is not None:
                try:
                    paths = write_reports(summary, self.reports_dir)
                except (AffineurError, OSError) as exc:
                    self.write(f"error: cannot write the build reports: {exc}\n")
                else:
                    self.write(f"reports: {', '.join(str(p) for p in paths)}\n")

    def _captured_output(self) -> None:
        """What failed tasks printed while doit captured it (doit's own reporter
        prints an empty block per failure; only real output is worth the space)."""
        for entry in self.failures:
            task = entry["task"]
            if not task.executed:
                continue
            for kind in ("err", "out"):
                text = "".join(getattr(a, kind) or "" for a in task.actions).strip()
                if text:
                    self.write(f"{task.name} <std{kind}>:\n{text}\n")
        if self.runtime_errors:
            self.write("Execution aborted.\n" + "\n".join(self.runtime_errors) + "\n")

    # --- the run as data --------------------------------------------------------------------

    def summary(self) -> RunSummary:
        """The run so far; tasks doit never started (it stopped early) are "not run"."""
        results = dict(self.results)
        for name, task in self.tasks.items():
            if name not in results and _package(task) is not None:
                results[name] = self._make_result(task, "notrun", 0.0)
        return RunSummary(
            packages=tuple(results[n] for n in sorted(results)),
            failures=tuple(self.package_failures),
            failed_tasks=tuple(self.failed_tasks),
            seconds=time.monotonic() - self.started,
            started=self.started_at,
            test_mode=self.context.keep_going,
        )

    def _failure(self, task: Any, fail: BaseFail) -> Failure | None:
        info = _package(task)
        if info is not None:
            known = self.context.recorder.get(info["key"])
            if known is not None and known.failure is not None:
                return replace(known.failure, task=task.name)
        if isinstance(fail, ActionFailed):
            from affineur.run._substitution import SubstitutesPublished

            if isinstance(fail.error, SubstitutesPublished):
                return None  # each substitute is already reported as the failure it replaced
            failure = Failure.from_error(
                fail.error,
                default_stage=_DEFAULT_STAGE.get(task.name.partition(":")[0], "internal"),
                task=task.name,
            )
        else:  # a crash rather than an AffineurError: still a failure of this task
            lines = str(fail.message).strip().splitlines() or ["failed"]
            failure = Failure(stage="internal", error=lines[0], causes=tuple(lines[1:]))
            failure = replace(failure, task=task.name)
        meta = (task.meta or {}).get("package") or {}
        return replace(
            failure,
            package=failure.package or meta.get("name"),
            version=failure.version or meta.get("version"),
            variant=failure.variant or meta.get("variant"),
        )

    def _make_result(
        self, task: Any, outcome: Outcome, seconds: float, because: tuple[str, ...] = ()
    ) -> PackageResult:
        info = _package(task) or {}
        deps = tuple(
            sorted(d for d in task.task_dep if d in self.tasks and _package(self.tasks[d]))
        )
        return PackageResult(
            task=task.name,
            package=str(info.get("name", "")),
            version=str(info.get("version", "")),
            variant=str(info.get("variant", "")),
            outcome=outcome,
            seconds=seconds,
            deps=deps,
            because=because,
            prebuilt=bool(info.get("prebuilt", False)),
        )

    def _result(
        self, task: Any, outcome: Outcome, seconds: float, because: tuple[str, ...] = ()
    ) -> None:
        self.results[task.name] = self._make_result(task, outcome, seconds, because)

    # --- output ---------------------------------------------------------------------------------

    @staticmethod
    def _counted(task: Any) -> bool:
        # Group tasks (no actions) and private ones are doit's bookkeeping, not work.
        return bool(task.actions) and not task.name.startswith("_")

    def _finish(self, name: str) -> float:
        self.done.add(name)
        start = self.running.pop(name, None)
        return 0.0 if start is None else time.monotonic() - start

    @property
    def _build_dir(self) -> Path | None:
        return self.reports_dir.parent if self.reports_dir is not None else None

    def _running_log(self, task: str) -> Path | None:
        """The log a running build is writing, in its private staging folder of the cache."""
        info = self.packages.get(task)
        if info is None or self._build_dir is None:
            return None
        found = sorted((self._build_dir / "cache").glob(f".staging-{info['key'][:16]}-*/build.log"))
        return found[-1] if found else None

    def _count(self, name: str) -> None:
        if name in self.packages:
            self.finished_packages += 1
            if self.view is not None:
                self.view.finished(name)

    def _package_line(
        self,
        name: str,
        verb: str,
        seconds: float | None,
        detail: str = "",
        *,
        failed: bool = False,
        body: list[str] | None = None,
    ) -> None:
        """One line for a finished package: ``[3/40] built cpu:foo-1.0 (2.1s)``."""
        self._count(name)
        took = f" ({duration(seconds)})" if seconds is not None else ""
        extra = f": {detail}" if detail else ""
        label = _label(name)
        line = f"[{self.finished_packages}/{len(self.packages)}] {verb} {label}{took}{extra}"
        # In a terminal the bar shows progress; only what needs reading is printed.
        if self.view is None or failed:
            self._emit([line, *(body or [])], failed=failed)

    def _emit(self, lines: list[str], *, failed: bool = False) -> None:
        if self.view is not None:
            from rich.text import Text

            style = "bold red" if failed else ""
            self.view.pin(Text(lines[0], style=style), *(Text(b) for b in lines[1:]))
            return
        self.write("".join(f"{line}\n" for line in lines))
        self.outstream.flush()


def _duration_key(info: Mapping[str, str]) -> str:
    """Durations are remembered by variant and name: a new version builds about as long."""
    return f"{info.get('variant', '')}:{info.get('name', '')}"


def _substitution(failure: Failure) -> str:
    where = f"; log: {failure.log}" if failure.log else ""
    return (
        f"failed at {failure.stage} ({failure.error}), "
        f"the upstream wheel of the same version stands in{where}"
    )


def progress_reporter(context: RunContext, *, reports_dir: Path | None) -> type[ProgressReporter]:
    """A reporter class for ``DOIT_CONFIG["reporter"]`` bound to this run's context."""

    class Bound(ProgressReporter):
        pass

    Bound.context = context
    Bound.reports_dir = reports_dir
    # Read while the tasks load, where a bad value is one clear error, not a traceback.
    Bound.heartbeat = heartbeat_interval(os.environ)
    return Bound
