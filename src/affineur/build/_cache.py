"""The content-addressed build cache: ``build/cache/<build-key>/``.

An entry holds the wheel, the build log and ``record.json``. It appears whole or
not at all: a build writes into a private staging directory and renames it into
place, and an entry counts only when its record (written last) is there. A build
killed half-way therefore leaves a staging directory that the next run discards,
never a wheel that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affineur.atomic import write_atomic
from affineur.build._key import BuildKey

__all__ = ["BuildCache", "CacheEntry"]

RECORD = "record.json"
LOG = "build.log"


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


class BuildCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def entry(self, key: BuildKey) -> CacheEntry:
        return CacheEntry(key, self.root / key)

    def get(self, key: BuildKey) -> CacheEntry | None:
        entry = self.entry(key)
        return entry if entry.record_path.exists() else None

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
        """Write the record last, then rename the whole directory into place."""
        (staging / ".pid").unlink(missing_ok=True)
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
        """Remove staging directories of runs that died (their pid is gone)."""
        if not self.root.is_dir():
            return
        for path in self.root.glob(".staging-*"):
            pid_file = path / ".pid"
            try:
                pid = int(pid_file.read_text())
                os.kill(pid, 0)
                continue  # still building
            except (OSError, ValueError):
                shutil.rmtree(path, ignore_errors=True)
