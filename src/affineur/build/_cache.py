"""The content-addressed build cache: ``build/cache/<build-key>/``.

An entry holds the wheel, the build log and ``record.json``. It appears whole or
not at all: a build writes into a private staging directory and renames it into
place, and an entry counts only when its record (written last) is there. A build
killed half-way therefore leaves a staging directory that the next run discards,
never a wheel that looks finished.

Nothing in the cache is trusted twice-removed: the record holds the wheel's
sha256 and size, and :meth:`BuildCache.get` (which every user of an entry goes
through: build environments, publishing, exports, doit's up-to-date check)
verifies them. Hashing every wheel on every no-op run would cost more than the
run, so a verification is remembered in ``.verified`` beside the record, keyed by
the wheel's inode, size, mtime and ctime: any write to the file changes its
ctime, which no user can set back. A damaged entry is discarded, so the next
step builds it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affineur.atomic import write_atomic
from affineur.build._key import BuildKey
from affineur.build._provenance import PROVENANCE_SUFFIX
from affineur.errors import AffineurError
from affineur.index import check_filename, sha256_file

__all__ = ["BuildCache", "CacheEntry", "Discarded"]

RECORD = "record.json"
LOG = "build.log"
VERIFIED = ".verified"
# Cached wheels are never written again: read-only makes an accidental edit
# (a tool "fixing" a wheel in place) fail instead of silently changing bytes
# the record vouches for.
WHEEL_MODE = 0o444

# Called with the key and the reason whenever a damaged entry is thrown away.
Discarded = Callable[[BuildKey, str], None]


def _stat_key(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


@dataclass(frozen=True)
class CacheEntry:
    key: BuildKey
    path: Path

    @property
    def record_path(self) -> Path:
        return self.path / RECORD

    @property
    def log(self) -> Path:
        return self.path / LOG

    def record(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.record_path.read_text())
        return data

    @property
    def wheel(self) -> Path:
        return self.path / str(self.record()["wheel"])

    @property
    def provenance(self) -> Path | None:
        """The build's provenance statement; None for a prebuilt (upstream) wheel."""
        path = self.path / f"{self.record()['wheel']}{PROVENANCE_SUFFIX}"
        return path if path.is_file() else None


class BuildCache:
    def __init__(self, root: Path, *, on_discard: Discarded | None = None) -> None:
        self.root = root
        self.on_discard = on_discard
        # Verified wheels of this process: key -> the stat that was verified.
        self._verified: dict[BuildKey, tuple[str, list[int]]] = {}
        self._lock = threading.Lock()

    def entry(self, key: BuildKey) -> CacheEntry:
        return CacheEntry(key, self.root / key)

    def get(self, key: BuildKey) -> CacheEntry | None:
        """The entry of ``key`` with its wheel verified, or None (a damaged one is discarded)."""
        entry = self.entry(key)
        if not entry.record_path.exists():
            return None
        problem = self.problem(entry)
        if problem is None:
            return entry
        self.discard(key, problem)
        return None

    def verified_wheel(self, key: BuildKey) -> tuple[str, int] | None:
        """File name and size of ``key``'s verified wheel (None: the entry is missing or damaged).

        Taken from the verification memo that :meth:`get` leaves, so asking costs
        no read of the record.
        """
        entry = self.get(key)
        if entry is None:
            return None
        remembered = self._remembered(entry)
        if remembered is not None:
            return remembered[0], remembered[1][1]
        wheel = entry.wheel
        try:
            return wheel.name, wheel.stat().st_size
        except OSError:
            return None

    def problem(self, entry: CacheEntry) -> str | None:
        """Why ``entry`` cannot be used (None when its wheel is the one its record vouches for)."""
        remembered = self._remembered(entry)
        if remembered is not None and _stat_key(entry.path / remembered[0]) == remembered[1]:
            return None
        try:
            record = entry.record()
        except (OSError, ValueError, RecursionError) as exc:
            return f"its record cannot be read ({exc!r})"
        if not isinstance(record, dict):
            return "its record is not a JSON object"
        name, sha256, size = record.get("wheel"), record.get("sha256"), record.get("size")
        if not isinstance(name, str) or not name.endswith(".whl"):
            return "its record names no wheel"
        try:
            check_filename(name)
        except AffineurError:
            return f"its record names the wheel {name!r}, which is not a file name"
        if not isinstance(sha256, str) or not isinstance(size, int):
            return "its record holds no sha256 and size of the wheel (an older cache format)"
        wheel = entry.path / name
        found = _stat_key(wheel)
        if found is None:
            return f"its wheel {name} is missing"
        if found[1] != size:
            return f"its wheel {name} is {found[1]} bytes, its record says {size}"
        if sha256_file(wheel) != sha256:
            return f"the sha256 of its wheel {name} differs from its record"
        self._remember(entry, name, found)
        return None

    def _remembered(self, entry: CacheEntry) -> tuple[str, list[int]] | None:
        with self._lock:
            if entry.key in self._verified:
                return self._verified[entry.key]
        try:
            data = json.loads((entry.path / VERIFIED).read_text())
            found = str(data["wheel"]), [int(v) for v in data["stat"]]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None
        # Kept for this process too: a no-op run asks for each entry several times
        # (its build task, every publish task holding it), and reading the memo
        # again each time cost more than the rest of those checks.
        with self._lock:
            self._verified.setdefault(entry.key, found)
        return found

    def _remember(self, entry: CacheEntry, name: str, stat: list[int]) -> None:
        with self._lock:
            self._verified[entry.key] = (name, stat)
        memo = entry.path / VERIFIED
        tmp = entry.path / f".{VERIFIED}.{os.getpid()}.{threading.get_ident()}.tmp"
        # The memo only saves work: a cache we cannot write to is still usable.
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps({"wheel": name, "stat": stat}) + "\n")
            tmp.replace(memo)

    def discard(self, key: BuildKey, reason: str) -> None:
        """Throw a damaged entry away (renamed first: it disappears at once, never half)."""
        with self._lock:
            self._verified.pop(key, None)
        entry = self.entry(key)
        aside = Path(tempfile.mkdtemp(prefix=f".discarded-{key[:16]}-", dir=self.root))
        try:
            entry.path.rename(aside / "entry")
        except OSError:
            pass  # already gone: another thread discarded it first
        else:
            if self.on_discard is not None:
                self.on_discard(key, reason)
        shutil.rmtree(aside, ignore_errors=True)

    @contextmanager
    def staging(self, key: BuildKey) -> Iterator[Path]:
        """A private directory that becomes the entry only if the block completes."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{key[:16]}-", dir=self.root))
        (staging / ".pid").write_text(str(os.getpid()))
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def commit(self, key: BuildKey, staging: Path, record: Mapping[str, Any]) -> CacheEntry:
        """Write the record last, then rename the whole directory into place.

        The record gets the wheel's sha256 and size, measured here; a record that
        already names a sha256 (an upstream wheel checked against the lock or the
        index) must agree with the file.
        """
        (staging / ".pid").unlink(missing_ok=True)
        wheel = staging / check_filename(str(record["wheel"]))
        sha256 = sha256_file(wheel)
        if record.get("sha256", sha256) != sha256:
            raise AffineurError(
                f"{wheel.name}: sha256 {sha256} differs from the expected {record['sha256']}",
                stage="hash",
                file=str(wheel),
            )
        wheel.chmod(WHEEL_MODE)
        stat = _stat_key(wheel)
        assert stat is not None
        record = {**record, "sha256": sha256, "size": stat[1]}
        (staging / VERIFIED).write_text(json.dumps({"wheel": wheel.name, "stat": stat}) + "\n")
        write_atomic(staging / RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
        final = self.root / key
        if final.exists() and not (final / RECORD).exists():
            # A directory without its record is not an entry (damaged by hand or
            # by a tool); the fresh result replaces it.
            shutil.rmtree(final, ignore_errors=True)
        try:
            staging.rename(final)
        except OSError:
            if not (final / RECORD).exists():
                raise
            # Another run finished the same key first; its result is equivalent.
            shutil.rmtree(staging, ignore_errors=True)
        return self.entry(key)

    def discard_stale_staging(self) -> None:
        """Remove staging directories of runs that died (their pid is gone), and what
        a run killed while discarding or withdrawing an entry left aside."""
        if not self.root.is_dir():
            return
        for path in [*self.root.glob(".discarded-*"), *self.root.glob(".withdrawn-*")]:
            shutil.rmtree(path, ignore_errors=True)
        for path in self.root.glob(".staging-*"):
            pid_file = path / ".pid"
            try:
                pid = int(pid_file.read_text())
                os.kill(pid, 0)
                continue  # still building
            except (OSError, ValueError):
                shutil.rmtree(path, ignore_errors=True)
