"""Keep going with substitutes: build on after failures, upstream wheels standing in.

What the command line calls "test mode" is two things: doit keeps going after a
failed task (``continue``), and a failed build is substituted. Switched on with
``doit test_mode=1`` (a doit command-line variable, read when the dodo loads) or
``AFFINEUR_TEST_MODE=1``.

A build that fails at any stage is replaced by the index's wheel of the same
name and version for this interpreter, when there is one and the index gives
its sha256 (the download is checked against it). The wheel goes into the cache
under the package's own build key, with ``"substituted": true`` in its record,
so dependents build against it and the index is published. A substitute is
never trusted later: the next run withdraws it and tries the real build again
(so every run reports the failure), and publishing an index that holds one
fails the publish task, so the run's exit code is not 0.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from packaging.tags import Tag, sys_tags
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from affineur.build import BuildCache, BuildKey, CacheEntry
from affineur.errors import AffineurError
from affineur.index import sha256_file
from affineur.progress import BuildFinished, Reporter
from affineur.run._reports import Substitute

if TYPE_CHECKING:
    # The index client's module loads when a substitute is looked for, not in every run.
    from affineur.index import DistFile

__all__ = [
    "ENV_VAR",
    "Attempt",
    "Attempts",
    "SubstitutesPublished",
    "WheelIndex",
    "is_substitute",
    "keep_going_requested",
    "read_tail",
    "refuse_substitutes",
    "substitute",
    "trusted",
    "withdraw",
]

ENV_VAR = "AFFINEUR_TEST_MODE"
_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})
TAIL_LINES = 40


def keep_going_requested(var: str | None, environ: Mapping[str, str]) -> bool:
    """Whether to keep going with substitutes ("test mode"): the doit variable wins
    over the environment variable."""
    for value, where in ((var, "test_mode="), (environ.get(ENV_VAR), f"{ENV_VAR}=")):
        if value is None:
            continue
        text = value.strip().lower()
        if text in _ON:
            return True
        if text in _OFF:
            return False
        raise AffineurError(
            f"{where}{value}: expected 1 or 0",
            hint="turn test mode on with 'doit test_mode=1'",
            stage="config",
        )
    return False


class WheelIndex(Protocol):
    """The part of :class:`affineur.index._client.IndexClient` a substitution needs."""

    def project_files(self, name: str) -> list[DistFile]: ...

    def download(self, file: DistFile, dest: Path) -> Path: ...


# A marker file beside the record: doit asks "is this a substitute?" for every
# build task on every run, and a stat is much cheaper than parsing the record.
SUBSTITUTE_MARKER = "SUBSTITUTE"


def is_substitute(entry: CacheEntry) -> bool:
    return (entry.path / SUBSTITUTE_MARKER).exists()


def trusted(cache: BuildCache, key: BuildKey) -> bool:
    """For doit's ``uptodate``: an entry holding a substitute is never up to date."""
    entry = cache.get(key)
    return entry is None or not is_substitute(entry)


def withdraw(cache: BuildCache, key: BuildKey) -> bool:
    """Remove a substitute from the cache so the real build is tried again."""
    entry = cache.get(key)
    if entry is None or not is_substitute(entry):
        return False
    # Rename first: the entry disappears at once, never half-deleted.
    aside = Path(tempfile.mkdtemp(prefix=f".withdrawn-{key[:16]}-", dir=cache.root))
    entry.path.rename(aside / "entry")
    shutil.rmtree(aside, ignore_errors=True)
    return True


def read_tail(log: Path | None, *, since: float = 0.0, lines: int = TAIL_LINES) -> tuple[str, ...]:
    """The last lines of a build log, unless the log is older than this build (stale)."""
    if log is None or not log.is_file() or log.stat().st_mtime < since:
        return ()
    return tuple(log.read_text(errors="replace").splitlines()[-lines:])


def substitute(
    *,
    cache: BuildCache,
    key: BuildKey,
    name: str,
    version: str,
    variant: str,
    error: AffineurError,
    index: WheelIndex,
    downloads: Path,
    tags: Iterable[Tag] | None = None,
) -> Substitute | None:
    """Put the upstream wheel of ``name==version`` into the cache under ``key``.

    None when the index has no wheel of that version for this interpreter. A
    wheel whose sha256 the index does not give is refused: nothing unverified
    enters the cache.
    """
    from affineur.index import best_wheel

    try:
        wanted = Version(version)
    except InvalidVersion:
        return None
    files = index.project_files(str(canonicalize_name(name)))
    found = best_wheel(files, wanted, list(tags if tags is not None else sys_tags()))
    if found is None:
        return None
    if not found.sha256:
        raise AffineurError(
            f"the index gives no sha256 for {found.filename}; it cannot stand in unverified",
            package=name,
            version=version,
            stage="hash",
        )
    path = downloads / found.filename
    if not (path.is_file() and sha256_file(path) == found.sha256):
        path = index.download(found, downloads)
    if sha256_file(path) != found.sha256:
        raise AffineurError(
            f"{found.filename}: sha256 differs from the index's",
            package=name,
            version=version,
            stage="hash",
        )
    with cache.staging(key) as staging:
        shutil.copyfile(path, staging / found.filename)
        (staging / SUBSTITUTE_MARKER).touch()
        cache.commit(
            key,
            staging,
            {
                "name": name,
                "version": version,
                "build_key": key,
                "variant": variant,
                "substituted": True,
                "wheel": found.filename,
                "sha256": found.sha256,
                "failure": {
                    "stage": error.stage or "build",
                    "error": error.message.splitlines()[0] if error.message else "failed",
                },
            },
        )
    return Substitute(found.filename, found.sha256)


class SubstitutesPublished(AffineurError):
    """A published index holds substitutes: the run must not pass, though nothing new broke."""


def refuse_substitutes(entries: Iterable[CacheEntry], where: str) -> None:
    """Fail after publishing an index that holds substitutes, so the run does not pass."""
    names = sorted(
        f"{r['name']} {r['version']}" for r in (e.record() for e in entries) if r.get("substituted")
    )
    if names:
        raise SubstitutesPublished(
            f"published {where} with {len(names)} upstream wheel(s) in place of failed builds",
            causes=tuple(names),
            stage="build",
            hint="see build/reports/report.json; test mode keeps the index installable meanwhile",
        )


@dataclass
class Attempt:
    """What the build action tells its :meth:`Attempts.attempt` while it runs."""

    outcome: Literal["built", "reused", "remote", "prebuilt"] = "built"
    log: Path | None = None
    """Where the build's log is kept if it fails (its tail goes into the report)."""
    wheel: str | None = None
    where: str | None = None
    """The cluster worker that built it (None: this machine)."""

    def reused(self) -> None:
        self.outcome = "reused"

    def reused_remote(self) -> None:
        self.outcome = "remote"


@dataclass
class Attempts:
    """Runs build actions, reports how each ended, and substitutes failures when keeping going.

    Every attempt ends with one :class:`~affineur.progress.BuildFinished` to the
    reporter, a failure included (the doit reporter learns cache reuse and
    substitution from these).
    """

    cache: BuildCache
    reporter: Reporter
    downloads: Path
    keep_going: bool = False

    @contextmanager
    def attempt(
        self,
        *,
        key: BuildKey,
        name: str,
        version: str,
        variant: str,
        index: WheelIndex,
        tags: Iterable[Tag] | None = None,
    ) -> Iterator[Attempt]:
        """Wrap one build; a failure is reported, then substituted (suppressed) or re-raised.

        ``tags`` are those of the variant's Python, which a stand-in must fit."""
        withdraw(self.cache, key)
        attempt = Attempt()
        started = time.time()
        try:
            yield attempt
        except AffineurError as exc:
            log = attempt.log if attempt.log and attempt.log.is_file() else None
            tail = read_tail(attempt.log, since=started - 1)
            stand_in: Substitute | None = None
            notes: tuple[str, ...] = ()
            if self.keep_going:
                try:
                    stand_in = substitute(
                        cache=self.cache,
                        key=key,
                        name=name,
                        version=version,
                        variant=variant,
                        error=exc,
                        index=index,
                        downloads=self.downloads,
                        tags=tags,
                    )
                except AffineurError as sub_exc:
                    notes = (f"no substitute: {sub_exc.one_line()}",)
            self.reporter.report(
                BuildFinished(
                    name=name,
                    version=version,
                    variant=variant,
                    key=key,
                    outcome="failed" if stand_in is None else "substituted",
                    wheel=None if stand_in is None else stand_in.wheel,
                    substitute_sha256=None if stand_in is None else stand_in.sha256,
                    error=exc,
                    notes=notes,
                    log=log,
                    log_tail=tail,
                )
            )
            if stand_in is None:
                raise
        else:
            self.reporter.report(
                BuildFinished(
                    name=name,
                    version=version,
                    variant=variant,
                    key=key,
                    outcome=attempt.outcome,
                    wheel=attempt.wheel,
                    where=attempt.where,
                )
            )
