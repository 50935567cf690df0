"""Write a file so that readers see the old bytes or the new ones, never a mix.

Every file affineur writes that something else reads later (locks, cache
records, downloads, reports, doit's state, edited config) goes through here:
the bytes go to a temporary file in the same folder, which is renamed over the
target only once it is complete. A rename within one file system is atomic, so
a run killed half-way leaves the previous file (and at worst a hidden
``.<name>.*.tmp`` beside it), never a truncated one that looks finished.

The temporary name is unique per call, so threads and processes writing the
same target never write into each other's file; the last rename wins whole.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_output", "write_atomic"]


@contextmanager
def atomic_output(path: Path, *, durable: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; it replaces ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was.
    ``durable`` flushes the bytes to disk before the rename (for state that must
    survive a power loss, at the cost of a disk flush). The file gets the usual
    permissions (0666 less the umask), unlike :func:`tempfile.mkstemp`'s 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            if durable:
                os.fsync(out.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(
    path: Path, data: bytes | str, *, durable: bool = False, skip_same: bool = False
) -> bool:
    """Write ``data`` (str as UTF-8) to ``path`` atomically; False when nothing was written.

    ``skip_same`` leaves a file that already holds exactly these bytes alone, its
    mtime too, so tools that watch mtimes (doit's file_dep, make) see no change.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if skip_same:
        try:
            if path.read_bytes() == raw:
                return False
        except OSError:
            pass
    with atomic_output(path, durable=durable) as out:
        out.write(raw)
    return True
