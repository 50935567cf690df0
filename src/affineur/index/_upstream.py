"""Upstream wheels: for discovery environments and for packages marked prebuilt.

Stage 1 may run build hooks with upstream wheels (it is the untrusted, networked
stage); nothing taken here reaches stage 2 except a ``prebuilt`` package, whose
wheel is then locked by hash like any sdist.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from packaging.tags import Tag, sys_tags
from packaging.utils import canonicalize_name
from packaging.version import Version

from affineur.errors import AffineurError
from affineur.index._client import IndexClient
from affineur.index._distfile import DistFile
from affineur.index._files import sha256_file
from affineur.index._usable import best_wheel

__all__ = ["UpstreamWheels"]


class UpstreamWheels:
    def __init__(
        self,
        client: IndexClient,
        cache_dir: Path,
        *,
        tags: Sequence[Tag] | None = None,
        python: str | None = None,
    ) -> None:
        """Wheels for the interpreter whose ``tags`` are given (default: the running
        one's); ``python`` is that interpreter, whose pip builds a missing wheel."""
        self.client = client
        self.cache_dir = cache_dir
        self._tags = list(tags) if tags is not None else None
        self.python = python or sys.executable
        # Discovery looks ahead in threads: one download (or pip build) per wheel.
        self._busy: dict[tuple[str, Version], threading.RLock] = {}
        self._guard = threading.Lock()

    @cached_property
    def tags(self) -> list[Tag]:
        return self._tags if self._tags is not None else list(sys_tags())

    def wheel_file(self, name: str, version: Version) -> DistFile | None:
        return best_wheel(self.client.project_files(name), version, self.tags)

    def fetch(self, name: str, version: Version) -> Path:
        """A wheel of exactly ``name==version`` for this interpreter.

        Prefers the index's wheel; when there is none, pip builds one from the
        sdist, which is acceptable here because discovery is the stage that may run
        untrusted code with network access, and its result never ships.
        """
        canonical = canonicalize_name(name)
        with self._guard:
            busy = self._busy.setdefault((canonical, version), threading.RLock())
        with busy:
            return self._fetch(canonical, version)

    def _fetch(self, canonical: str, version: Version) -> Path:
        found = self.wheel_file(canonical, version)
        if found is not None:
            target = self.cache_dir / found.filename
            if target.exists() and (found.sha256 is None or sha256_file(target) == found.sha256):
                return target
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            return self.client.download(found, self.cache_dir)
        # One interpreter's build of an sdist is not another's (a C extension).
        best = self.tags[0]
        built_dir = (
            self.cache_dir / "built" / f"{best.interpreter}-{best.abi}" / f"{canonical}-{version}"
        )
        existing = sorted(built_dir.glob("*.whl")) if built_dir.is_dir() else []
        if existing:
            return existing[0]
        return self._pip_wheel(canonical, version, built_dir)

    def _pip_wheel(self, name: str, version: Version, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            # pip runs itself under the variant's Python (--python): that Python
            # need not have pip of its own, and its wheel is the one built.
            python = [] if self.python == sys.executable else ["--python", self.python]
            cmd = [
                sys.executable,
                "-m",
                "pip",
                *python,
                "wheel",
                "--no-deps",
                "--quiet",
                "--index-url",
                self.client.index_urls[0],
                "-w",
                tmp,
                f"{name}=={version}",
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            wheels = sorted(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not wheels:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-20:]
                raise AffineurError(
                    "no upstream wheel, and pip could not build one for discovery",
                    package=name,
                    version=str(version),
                    stage="discovery",
                    causes=tuple(tail),
                    hint="set 'discovery: source' in the variant, or mark it prebuilt",
                )
            Path(tmp).rename(dest)
        return dest / wheels[0].name
