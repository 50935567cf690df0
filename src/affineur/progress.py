"""Progress events: what affineur is doing, as typed data, reported through an object.

Every stage reports through a :class:`Reporter` it is given and never writes to
a terminal itself, the way resolvelib's resolver reports through its
``BaseReporter``. An event is a frozen dataclass naming what happened, with the
fields a display needs; the wording belongs to whoever shows it. So the
command line (:class:`StreamReporter`: one plain line per event), the doit
reporter, a live display and tests each see the same events.

The events, in pipeline order (``verbose`` ones are shown only with ``-v``):

=============================  ================================================
stage 1: locking               :class:`LockStarted`, :class:`Downloading`,
                               :class:`MetadataFound` (verbose),
                               :class:`DiscoveringRequirements`,
                               :class:`BuildingForDiscovery`,
                               :class:`LockFinished`, :class:`PinsMoved`;
                               :class:`LockStale` when
                               ``doit`` re-locks on its own
stage 2: building              :class:`BuildStarted` (a real build begins,
                               verbose), :class:`BuildFinished` (every build
                               action ends with one: built, reused, taken,
                               substituted or failed; "built" is verbose),
                               :class:`Rebuilt` (a forced build, compared with
                               the wheel it replaced), :class:`CacheEntryDiscarded`,
                               :class:`Published`
anything else worth a line     :class:`Notice` (``warning`` marks one that
                               needs attention but stops nothing)
=============================  ================================================

A reporter may be called from several threads at once (doit's parallel
runner); :class:`StreamReporter` writes each line with one call.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, TextIO

from affineur.errors import AffineurError

__all__ = [
    "BuildFinished",
    "BuildOutcomeName",
    "BuildStarted",
    "BuildingForDiscovery",
    "CacheEntryDiscarded",
    "DiscoveringRequirements",
    "Downloading",
    "Event",
    "FanOut",
    "LockFinished",
    "LockStale",
    "LockStarted",
    "MetadataFound",
    "Notice",
    "NullReporter",
    "PinMove",
    "PinsMoved",
    "Published",
    "Rebuilt",
    "RecordingReporter",
    "Reporter",
    "StreamReporter",
    "describe",
]


@dataclass(frozen=True)
class Event:
    """The base of every progress event."""

    @property
    def verbose(self) -> bool:
        """Shown only to a person who asked for details (``-v``)."""
        return False


# --- stage 1: locking ------------------------------------------------------------------


@dataclass(frozen=True)
class LockStarted(Event):
    """Resolution of one collection for one variant begins."""

    collection: str
    variant: str
    requirements: tuple[str, ...]


@dataclass(frozen=True)
class LockFinished(Event):
    """The lock is assembled: ``packages`` nodes, ``installed`` of them in the install closure."""

    collection: str
    variant: str
    packages: int
    installed: int


@dataclass(frozen=True)
class PinMove:
    """One version a re-lock moved (``old`` None: added; ``new`` None: removed), and why."""

    name: str
    old: str | None
    new: str | None
    reason: str


@dataclass(frozen=True)
class PinsMoved(Event):
    """A re-lock changed pinned versions; each move says why (``affineur lock`` shows them)."""

    collection: str
    variant: str
    moves: tuple[PinMove, ...]


@dataclass(frozen=True)
class LockStale(Event):
    """A ``doit`` run found a lock whose inputs changed and re-locks it before building."""

    collection: str
    variant: str


@dataclass(frozen=True)
class Downloading(Event):
    """A file (an sdist or a wheel) is fetched from an index; ``what`` names it for people."""

    what: str


@dataclass(frozen=True)
class MetadataFound(Event):
    """Where a candidate's dependencies came from, when not from its sdist's PKG-INFO."""

    name: str
    version: str
    source: Literal["wheel", "backend"]
    filename: str | None = None
    """The wheel whose core metadata was read (``source == "wheel"``)."""

    @property
    def verbose(self) -> bool:
        return True


@dataclass(frozen=True)
class DiscoveringRequirements(Event):
    """The ``get_requires_*`` hooks of a package run to learn its build requirements."""

    name: str
    version: str


@dataclass(frozen=True)
class BuildingForDiscovery(Event):
    """``discovery: source``: a build tool is built from source to run others' hooks."""

    name: str
    version: str


# --- stage 2: building -----------------------------------------------------------------

BuildOutcomeName = Literal["built", "reused", "remote", "prebuilt", "substituted", "failed"]
"""How a build action ended: built here, found in the local or remote cache, taken
as the upstream wheel on purpose (prebuilt), replaced by the upstream wheel after
a failure (keep-going mode), or failed."""


@dataclass(frozen=True)
class BuildStarted(Event):
    """A package is really being built (not found in a cache, not prebuilt)."""

    name: str
    version: str
    variant: str
    key: str
    """Its build key: ``build/cache/<key>/`` is where the result goes."""
    where: str | None = None
    """The cluster it is sent to; None: this machine."""

    @property
    def verbose(self) -> bool:
        # The run's own display shows which packages build; this line is for -v.
        return True


@dataclass(frozen=True)
class BuildFinished(Event):
    """A build action ended; every one ends with exactly one of these, failures included."""

    name: str
    version: str
    variant: str
    key: str
    outcome: BuildOutcomeName
    wheel: str | None = None
    """The wheel's file name, when there is one."""
    where: str | None = None
    """The cluster worker that built it; None: this machine."""
    error: AffineurError | None = None
    """What failed (``failed`` and ``substituted``)."""
    notes: tuple[str, ...] = ()
    """More about the failure that the error itself does not say (why no substitute)."""
    log: Path | None = None
    """The failed build's log."""
    log_tail: tuple[str, ...] = ()
    substitute_sha256: str | None = None
    """For ``substituted``: the sha256 of the upstream wheel standing in (``wheel``)."""

    @property
    def verbose(self) -> bool:
        # A local build is on the run's own display already; where a cluster built
        # it is news.
        return self.outcome == "built" and self.where is None


@dataclass(frozen=True)
class Rebuilt(Event):
    """A build was forced (``affineur rebuild``, ``doit forget``) instead of reusing its entry.

    ``previous_sha256`` is the wheel it replaced (None: there was none), so a
    person learns whether building again gave the same bytes.
    """

    name: str
    version: str
    variant: str
    key: str
    sha256: str
    previous_sha256: str | None = None

    @property
    def identical(self) -> bool:
        return self.previous_sha256 == self.sha256


@dataclass(frozen=True)
class CacheEntryDiscarded(Event):
    """A cache entry failed its check (its wheel's hash, its record) and was removed."""

    key: str
    reason: str


@dataclass(frozen=True)
class Published(Event):
    """A collection's index for a variant was written from the cache."""

    collection: str
    variant: str
    index: Path
    wheels: int


@dataclass(frozen=True)
class Notice(Event):
    """Something worth one line that no other event says (``warning``: needs attention)."""

    text: str
    warning: bool = False


# --- reporters -----------------------------------------------------------------------


class Reporter(Protocol):
    def report(self, event: Event) -> None:
        """Take one event; must not raise, and may be called from several threads."""


class NullReporter:
    def report(self, event: Event) -> None:
        pass


@dataclass
class RecordingReporter:
    """Keeps every event, for tests and for callers that decide later what to show."""

    events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def report(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type[Event]) -> list[Event]:
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]


def _move_line(move: PinMove) -> str:
    if move.old is None:
        return f"{move.name} {move.new} added: {move.reason}"
    if move.new is None:
        return f"{move.name} {move.old} removed: {move.reason}"
    return f"{move.name} {move.old} -> {move.new}: {move.reason}"


def describe(event: Event) -> str | None:
    """The plain text for ``event`` (None: nothing to say), as the command line prints it;
    it may span several lines."""
    match event:
        case LockStarted():
            wanted = ", ".join(event.requirements)
            return f"lock {event.collection} for {event.variant}: resolving {wanted}"
        case LockFinished():
            return (
                f"locked {event.collection} for {event.variant}: {event.packages} packages, "
                f"{event.installed} installed"
            )
        case PinsMoved():
            pins = "pin" if len(event.moves) == 1 else "pins"
            lines = [f"{event.collection}/{event.variant}: {len(event.moves)} {pins} moved"]
            lines += [f"  {_move_line(m)}" for m in event.moves]
            return "\n".join(lines)
        case LockStale():
            return f"lock {event.collection}/{event.variant} is stale: re-locking"
        case Downloading():
            return f"download {event.what}"
        case MetadataFound():
            where = event.filename if event.source == "wheel" else "the build backend"
            return f"{event.name}=={event.version}: metadata from {where}"
        case DiscoveringRequirements():
            return f"discover build requirements of {event.name}=={event.version}"
        case BuildingForDiscovery():
            return f"build {event.name}=={event.version} to discover with it (source mode)"
        case BuildStarted():
            on = f" on {event.where}" if event.where else ""
            return f"build {event.name}=={event.version} ({event.variant}){on}"
        case BuildFinished():
            if event.outcome == "built":
                return f"built {event.wheel}" + (f" on {event.where}" if event.where else "")
            if event.outcome == "remote":
                return f"reused from remote cache: {event.name}=={event.version} ({event.variant})"
            return None  # failures reach people through the task's failure; reuse is quiet
        case Rebuilt():
            who = f"{event.name}=={event.version} ({event.variant})"
            if event.previous_sha256 is None:
                return f"{who}: built; there was no previous wheel to compare with"
            if event.identical:
                return f"{who}: rebuilt; the wheel is identical to the previous one"
            return (
                f"{who}: rebuilt; the wheel differs from the previous one "
                f"(sha256 {event.previous_sha256[:12]}… -> {event.sha256[:12]}…)"
            )
        case CacheEntryDiscarded():
            return f"discarded build/cache/{event.key}: {event.reason}"
        case Published():
            return f"published {event.wheels} wheels to {event.index}"
        case Notice():
            return f"warning: {event.text}" if event.warning else event.text
    # Task events are rendered by the run's own display (affineur.run._doit_reporter).
    return None


class FanOut:
    """Reports every event to each of several reporters, in order."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters

    def report(self, event: Event) -> None:
        for reporter in self.reporters:
            reporter.report(event)


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

    def report(self, event: Event) -> None:
        if event.verbose and not self.verbose:
            return
        text = describe(event)
        if text is None:
            return
        elapsed = time.monotonic() - self.start
        self.stream.write("".join(f"[{elapsed:6.1f}s] {line}\n" for line in text.splitlines()))
        self.stream.flush()
