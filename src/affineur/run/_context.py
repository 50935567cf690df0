"""What one doit invocation shares: the run command, the dodo's checkout and the reporter.

doit makes the run command before the dodo loads and the reporter after, and
passes nothing between them; a :class:`RunContext`, current for the command's
execution (:func:`entered`, :func:`current_run`), is how they meet: whether a
run is going on, the checkout mutex it holds until it ends, the record of
build outcomes, what the no-op stamp needs, and whether the run failed although
every task passed. Nothing here knows doit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from affineur.run._noop import Stat
from affineur.run._reports import RunRecorder, RunSummary

__all__ = ["RunContext", "current_run", "entered"]


@dataclass
class RunContext:
    """What the run command, the dodo's checkout and the reporter of one doit call share."""

    running: bool = False
    """True while doit's run command loads and runs tasks (not for list, info, forget...).

    Task creators do work only a run should do while loading (re-locking stale
    locks) only then, so that ``doit list`` stays read-only and quick."""
    keep_going: bool = False
    """Keep going after failures, with upstream wheels standing in for failed builds."""
    recorder: RunRecorder = field(default_factory=RunRecorder)
    """Build outcomes doit cannot see (reused, substituted), by build key: the
    checkout reports its :class:`~affineur.progress.BuildFinished` events to it."""
    failed: bool = False
    """Set by the reporter: a run whose only failures were substituted still failed."""
    executor: str | None = None
    """``doit --executor``: where build actions run (see affineur.run._dask)."""
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    """What the run holds until it ends (the checkout mutex)."""
    workers: int = 1
    """Tasks run at once (``-n``): the progress display divides the remaining work by it."""
    selected: tuple[str, ...] = ()
    """What the command line names (tasks, patterns, ``name=value`` variables)."""

    request_rebuild: Callable[[Iterable[str]], None] | None = None
    """Set by the dodo's tasks: build these keys again rather than reuse them."""
    root: Path | None = None
    """Set by the dodo's tasks: the checkout's folder."""
    write_stamp: Callable[[str, RunSummary, Mapping[str, Stat]], Path | None] | None = None
    """Set by the dodo's tasks: record that nothing is left to do (see affineur.run._noop)."""
    summary: RunSummary | None = None
    """Set by the reporter when the run completes: what every package's task did."""


_CURRENT: list[RunContext] = []


def current_run() -> RunContext:
    """The context of the running ``doit run``; outside one, a fresh one that is not running."""
    return _CURRENT[-1] if _CURRENT else RunContext()


@contextlib.contextmanager
def entered(context: RunContext) -> Iterator[RunContext]:
    """``context`` is :func:`current_run` within the block (a doit command's execution)."""
    _CURRENT.append(context)
    try:
        yield context
    finally:
        _CURRENT.remove(context)
