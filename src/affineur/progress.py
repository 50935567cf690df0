"""Progress events, reported through an object rather than printed.

The command line, the doit glue and the tests each pass their own reporter, so
they all see the same events; the engine never writes to a terminal itself.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO

__all__ = ["NullReporter", "Reporter", "StreamReporter"]


class Reporter(Protocol):
    def message(self, text: str) -> None:
        """A line a person follows: what the engine is doing now."""

    def detail(self, text: str) -> None:
        """A line that matters when something goes wrong (shown with --verbose)."""


class NullReporter:
    def message(self, text: str) -> None:
        pass

    def detail(self, text: str) -> None:
        pass


class StreamReporter:
    """Plain lines with the elapsed time: readable in a terminal and in CI logs alike."""

    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False) -> None:
        self._stream = stream
        self.verbose = verbose
        self.start = time.monotonic()

    @property
    def stream(self) -> TextIO:
        # sys.stderr is looked up at each line, not once: a live terminal display
        # swaps it for a proxy that prints above the display instead of through it.
        return self._stream or sys.stderr

    def _emit(self, text: str) -> None:
        elapsed = time.monotonic() - self.start
        self.stream.write(f"[{elapsed:6.1f}s] {text}\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        self._emit(text)

    def detail(self, text: str) -> None:
        if self.verbose:
            self._emit(text)
