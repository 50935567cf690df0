"""A doit DB backend that keeps every finished task's state, even when the run is killed.

doit's own backends hold state in memory and write it when the run ends, so a
killed run forgets every task it completed. :class:`DurableDB` is doit's JSON
backend plus a journal: the state directory holds ``state.json`` (a snapshot,
the same shape as doit's JSON file) and ``journal`` (one line per change, in
order). Each change is appended with a single ``write`` to a file opened with
``O_APPEND`` as soon as doit makes it, that is, as soon as a task is saved as
successful; once ``write`` returns the kernel owns the bytes, so SIGKILL loses
nothing (power loss may: the journal is not fsynced per task, which would cost a
disk flush per task for a case the content-addressed build cache already
covers). At the end of a run that changed something, the journal is folded
into a new snapshot (temp file, fsync, rename) and emptied.

Loading reads the snapshot and replays the journal: one JSON parse plus one per
journal line, as cheap as doit's JSON backend for a no-op run, which writes
nothing at all. A last line torn by a kill mid-write is ignored; its task is
simply not up to date.

Processes share the files safely: appends take a shared ``flock`` on the journal
and compaction an exclusive one, and compaction replays what is on disk (every
process's changes are there), so ``doit forget`` beside a run loses nothing.
Within a process a lock serialises changes, so doit's thread runner is safe too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from affineur.atomic import write_atomic
from affineur.run._doit import DatabaseException

__all__ = ["DurableDB"]

SNAPSHOT = "state.json"
JOURNAL = "journal"

Tasks = dict[str, dict[str, Any]]


class Codec(Protocol):
    def encode(self, data: Any) -> str: ...

    def decode(self, data: str) -> Any: ...


@contextlib.contextmanager
def _flock(fd: int, mode: int) -> Iterator[None]:
    fcntl.flock(fd, mode)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _replay(db: Tasks, journal: bytes, codec: Codec, where: Path) -> None:
    # Every entry ends with "\n"; what follows the last one is a write torn by a
    # kill and is left out (the caller cuts it off before appending again).
    for number, raw in enumerate(journal.split(b"\n")[:-1], start=1):
        try:
            _apply(db, codec.decode(raw.decode("utf-8")))
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise DatabaseException(
                f"{where}: line {number} of the doit state journal is damaged ({exc}).\n"
                "Remove the directory to start from a clean state: "
                "tasks will be checked again and cached builds reused."
            ) from None


def _apply(db: Tasks, op: list[Any]) -> None:
    kind = op[0]
    if kind == "s":
        db.setdefault(op[1], {})[op[2]] = op[3]
    elif kind == "r":
        db.pop(op[1], None)
    elif kind == "R":
        db.clear()
    else:
        raise ValueError(f"unknown journal entry {kind!r}")


class DurableDB:
    """doit backend (``backend`` plugin): snapshot plus an append-only journal."""

    desc = "JSON snapshot plus a journal written as each task finishes (survives kills)"

    def __init__(self, name: str, codec: Codec, *, module_name: str | None = None) -> None:
        self.name = name
        self.codec = codec
        self._dir = Path(name)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._changed = False
        self._fd = os.open(self._dir / JOURNAL, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            with _flock(self._fd, fcntl.LOCK_SH):
                self._db, torn = self._read()
            if torn:
                with _flock(self._fd, fcntl.LOCK_EX):
                    self._db, torn = self._read()
                    # Cut the torn tail, or the next entry would be glued onto it.
                    os.ftruncate(self._fd, os.fstat(self._fd).st_size - torn)
        except BaseException:
            os.close(self._fd)
            raise

    def _read(self) -> tuple[Tasks, int]:
        """Snapshot plus journal as on disk, and the torn tail's length.

        The caller holds the journal's flock.
        """
        snapshot = self._dir / SNAPSHOT
        db: Tasks = {}
        if snapshot.exists():
            try:
                db = self.codec.decode(snapshot.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise DatabaseException(
                    f"{snapshot}: the doit state snapshot is damaged ({exc}).\n"
                    "Remove the directory to start from a clean state."
                ) from None
        with open(self._fd, "rb", closefd=False) as journal:
            journal.seek(0)
            data = journal.read()
        _replay(db, data, self.codec, self._dir / JOURNAL)
        return db, len(data) - (data.rfind(b"\n") + 1)

    def _append(self, op: list[Any]) -> None:
        line = (self.codec.encode(op) + "\n").encode("utf-8")
        with _flock(self._fd, fcntl.LOCK_SH):
            os.write(self._fd, line)
        self._changed = True

    # --- doit's backend interface -------------------------------------------------------

    def get(self, task_id: str, dependency: str) -> Any:
        entry = self._db.get(task_id)
        return None if entry is None else entry.get(dependency)

    def in_(self, task_id: str) -> bool:
        return task_id in self._db

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        with self._lock:
            entry = self._db.setdefault(task_id, {})
            if dependency in entry and entry[dependency] in (value, self._stored(value)):
                # doit re-saves unchanged values (group tasks, every run); writing
                # them would make a no-op run rewrite the whole state.
                return
            entry[dependency] = value
            self._append(["s", task_id, dependency, value])

    def _stored(self, value: Any) -> Any:
        """``value`` as it reads back: doit saves a group task's deps as (), which
        comes back as [] and would otherwise look changed on every run."""
        return self.codec.decode(self.codec.encode(value))

    def remove(self, task_id: str) -> None:
        with self._lock:
            if task_id in self._db:
                del self._db[task_id]
                self._append(["r", task_id])

    def remove_all(self) -> None:
        with self._lock:
            self._db = {}
            self._append(["R"])

    def dump(self) -> None:
        """Fold the journal into the snapshot when this process changed anything."""
        with self._lock:
            try:
                if self._changed:
                    with _flock(self._fd, fcntl.LOCK_EX):
                        self._compact()
                    self._changed = False
            finally:
                os.close(self._fd)
                self._fd = -1

    def _compact(self) -> None:
        merged, _ = self._read()
        write_atomic(self._dir / SNAPSHOT, self.codec.encode(merged), durable=True)
        # Truncate rather than replace the journal: other processes append
        # through descriptors of this same file.
        os.ftruncate(self._fd, 0)
