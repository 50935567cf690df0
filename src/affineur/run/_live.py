"""What a person watching a run sees: a live display in a terminal, one line per package elsewhere.

In a terminal, rich draws (and keeps redrawing) one bar over the run's packages
with the elapsed time and an estimate of the time left, and under it each running
build with how long it has run and the last line of its build log. Failures and
substitutions are printed above the bar, where they stay, each with its log's
path. Anything else written to stderr while the display runs (a lock message, a
publish) is printed above it too, never through it.

Elsewhere (CI logs, a pipe) there are no control characters: one line per
finished package and the summary.

The estimate comes from earlier runs: every build's duration is remembered in
``build/reports/durations.json`` by variant and name (a new version of a package
usually takes as long as the last), and the work left is divided by the number of
workers. Packages never built before count as the median of those that were.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from affineur.run._reports import duration

if TYPE_CHECKING:
    # rich is imported by the view that uses it: a run outside a terminal, every
    # no-op run among them, draws nothing and should not pay for loading it.
    from rich.console import RenderableType
    from rich.text import Text

__all__ = ["Durations", "LiveView", "estimate_left", "last_line"]

_SHOWN_RUNNING = 8
_TAIL_BYTES = 4096


class Durations:
    """Build durations of earlier runs, by ``variant:name``; a missing or bad file is no history."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.seconds: dict[str, float] = {}
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            if isinstance(data, dict):
                self.seconds = {
                    str(k): float(v) for k, v in data.items() if isinstance(v, int | float)
                }

    def estimate(self, key: str) -> float | None:
        if key in self.seconds:
            return self.seconds[key]
        return statistics.median(self.seconds.values()) if self.seconds else None

    def save(self, measured: Mapping[str, float]) -> None:
        if self.path is None or not measured:
            return
        merged = {**self.seconds, **{k: round(v, 2) for k, v in measured.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.path)


def estimate_left(
    waiting: list[str], running: Mapping[str, float], durations: Durations, workers: int
) -> float | None:
    """Seconds until the run ends: the work not done, spread over the workers.

    ``waiting`` are the keys of packages not started, ``running`` maps keys to how
    long they have run. None when no earlier run left any duration to go by.
    """
    if not durations.seconds:
        return None
    work = sum(durations.estimate(k) or 0.0 for k in waiting)
    work += sum(max(0.0, (durations.estimate(k) or 0.0) - ran) for k, ran in running.items())
    return work / max(1, workers)


def last_line(log: Path | None) -> str:
    """The last non-empty line of a log that is being written (cheap: only its tail is read)."""
    if log is None:
        return ""
    try:
        with log.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - _TAIL_BYTES))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    for line in reversed(tail.splitlines()):
        if line.strip():
            return line.strip()
    return ""


class LiveView:
    """The terminal display. rich redraws it from its own thread, so its state has a lock."""

    def __init__(
        self,
        stream: TextIO,
        *,
        total: int,
        durations: Durations,
        workers: int,
        log_of: Callable[[str], Path | None],
    ) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream, force_terminal=True)
        self.total = total
        self.durations = durations
        self.workers = workers
        self.log_of = log_of
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.done = 0
        self.waiting: dict[str, str] = {}
        """task -> duration key of packages not started yet."""
        self.running: dict[str, tuple[str, str, float]] = {}
        """task -> (label, duration key, start)."""
        self.live = Live(
            console=self.console,
            get_renderable=self.render,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=True,
        )

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.stop()

    def began(self, task: str, label: str, key: str) -> None:
        with self._lock:
            self.waiting.pop(task, None)
            self.running[task] = (label, key, time.monotonic())
        self.live.refresh()

    def finished(self, task: str) -> None:
        with self._lock:
            self.waiting.pop(task, None)
            self.running.pop(task, None)
            self.done += 1
        self.live.refresh()

    def pin(self, *lines: Text | str) -> None:
        """Print above the display; it stays when the display moves on."""
        for line in lines:
            self.console.print(line, highlight=False, soft_wrap=True)

    def render(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            waiting = list(self.waiting.values())
            running = dict(self.running)
            done = self.done
        now = time.monotonic()
        left = estimate_left(
            waiting,
            {key: now - start for _, key, start in running.values()},
            self.durations,
            self.workers,
        )
        eta = "ETA unknown (no earlier run)" if left is None else f"ETA {duration(left)}"
        head = Table.grid(padding=(0, 1))
        head.add_row(
            ProgressBar(total=max(1, self.total), completed=done, width=32),
            Text(f"{done}/{self.total} packages", style="bold"),
            Text(duration(now - self.started)),
            Text(eta, style="cyan"),
        )
        ordered = sorted(running.items(), key=lambda item: item[1][2])
        shown = ordered[:_SHOWN_RUNNING]
        rows = Table.grid(padding=(0, 1))
        # The name is what a person looks for: never squeezed; the log line gives way.
        width = max((len(label) + 2 for _, (label, _, _) in shown), default=0)
        rows.add_column(no_wrap=True, min_width=width)
        rows.add_column(justify="right", no_wrap=True)
        rows.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        for task, (label, _key, start) in shown:
            rows.add_row(
                Text(f"  {label}", style="bold"),
                Text(duration(now - start)),
                Text(last_line(self.log_of(task)), style="dim"),
            )
        if len(ordered) > _SHOWN_RUNNING:
            rows.add_row(Text(f"  ... and {len(ordered) - _SHOWN_RUNNING} more"), "", "")
        return Group(head, rows)
