"""One affineur run per checkout at a time.

Two ``doit`` runs in one checkout would re-lock, build and publish into the same
files. :func:`hold_checkout` serialises them with ``flock`` on
``<root>/.affineur/mutex`` (a mutex, not to be confused with the dependency lock
in ``lock/``): the kernel releases it when its holder dies, even by SIGKILL, so
a crashed run never leaves a stale mutex behind. The holder writes its pid into
the file so that a waiter can say whom it waits for.

A second run waits, saying so once on stderr. ``AFFINEUR_LOCK_TIMEOUT`` (seconds)
bounds the wait; ``0`` means do not wait at all. Past it the run stops with an
:class:`AffineurError` naming the holder.

The descriptor is opened close-on-exec (Python's default), so build
subprocesses do not inherit the mutex and cannot keep it alive after the run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from affineur.errors import AffineurError

__all__ = ["TIMEOUT_ENV", "hold_checkout", "mutex_path"]

TIMEOUT_ENV = "AFFINEUR_LOCK_TIMEOUT"

_POLL_SECONDS = 0.1


def mutex_path(root: Path) -> Path:
    return Path(root) / ".affineur" / "mutex"


def _timeout_from_env() -> float | None:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise AffineurError(
            f"{TIMEOUT_ENV} must be a number of seconds, got {raw!r}",
            hint=f"unset {TIMEOUT_ENV} to wait as long as it takes, or set it to 0 not to wait",
            stage="config",
        ) from None
    return max(value, 0.0)


def _try_take(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _holder(fd: int) -> str:
    text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    return text if text.isdigit() else "unknown"


@contextlib.contextmanager
def hold_checkout(
    root: Path,
    *,
    timeout: float | None = None,
    stream: TextIO | None = None,
) -> Iterator[None]:
    """Hold the checkout's mutex for the ``with`` block.

    ``timeout`` (seconds; default from ``AFFINEUR_LOCK_TIMEOUT``, else no limit)
    bounds the wait; ``stream`` (default stderr) gets the one waiting message.
    """
    limit = _timeout_from_env() if timeout is None else max(timeout, 0.0)
    path = mutex_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_take(fd):
            holder = _holder(fd)
            if limit is None or limit > 0:
                out = stream or sys.stderr
                out.write(f"waiting for another affineur run in this checkout (pid {holder})…\n")
                out.flush()
            if not _wait(fd, limit):
                raise AffineurError(
                    f"another affineur run holds this checkout (pid {holder})",
                    hint=f"wait for it to finish, or raise {TIMEOUT_ENV} (seconds) to wait longer",
                    file=str(path),
                )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _wait(fd: int, limit: float | None) -> bool:
    if limit is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    # flock has no timeout of its own: poll until the deadline.
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(min(_POLL_SECONDS, max(deadline - time.monotonic(), 0)))
        if _try_take(fd):
            return True
    return _try_take(fd)
