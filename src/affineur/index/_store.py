"""The store of downloaded source archives: verified on every use.

Every file in ``build/sdists/`` is named in a lock with its sha256, so the store
never trusts a file for being there: each :meth:`SdistStore.ensure` checks the hash
(memoised only while the file's size, mtime and inode stay the same).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from affineur.errors import AffineurError
from affineur.index._files import check_filename, sha256_file

if TYPE_CHECKING:
    from affineur.index._distfile import DistFile

__all__ = ["Fetcher", "SdistStore"]


class Fetcher(Protocol):
    """What the store needs from an index client (``IndexClient`` is one)."""

    def find_file(self, project: str, filename: str) -> DistFile: ...

    def download(self, file: DistFile, dest: Path) -> Path: ...


class SdistStore:
    """Source archives (and prebuilt wheels) by file name, each checked against its hash."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # (path, device, inode, size, mtime_ns) -> sha256. In memory only: a record on
        # disk could be forged or go stale together with the file it vouches for.
        self._verified: dict[tuple[str, int, int, int, int], str] = {}
        self._lock = threading.Lock()

    def path(self, filename: str) -> Path:
        return self.root / check_filename(filename)

    def ensure(self, project: str, filename: str, sha256: str, fetch: Fetcher | None) -> Path:
        """The verified file, downloaded through ``fetch`` when absent.

        Without ``fetch`` (stage 2, offline) a missing file is an error. A present
        file with the wrong hash is never replaced silently: something changed it,
        and a person should look before it is deleted.
        """
        path = self.path(filename)
        expected = sha256.lower()
        if path.exists():
            actual = self._hash(path)
            if actual != expected:
                raise AffineurError(
                    f"{path}: expected sha256 {expected}, found {actual}",
                    package=project,
                    stage="hash",
                    hint=f"delete {path} to download it again, "
                    "or re-lock if the new file is the one you want",
                )
            return path
        if fetch is None:
            raise AffineurError(
                f"{filename} is not in {self.root}",
                package=project,
                stage="download",
                hint="run the lock or download step with network access first",
            )
        found = fetch.find_file(project, filename)
        if found.sha256 and found.sha256.lower() != expected:
            raise AffineurError(
                f"{filename}: the lock says sha256 {expected}, the index says {found.sha256}",
                package=project,
                stage="hash",
                hint="the file changed upstream since the lock was made; re-lock to accept it",
            )
        # Verifying against the lock's hash inside the download keeps a wrong file
        # from ever landing in the store.
        self.root.mkdir(parents=True, exist_ok=True)
        got = fetch.download(replace(found, sha256=expected), self.root)
        actual = self._hash(got)
        if actual != expected:
            got.unlink(missing_ok=True)
            raise AffineurError(
                f"{filename}: expected sha256 {expected}, downloaded {actual}",
                package=project,
                stage="hash",
            )
        return got

    def _hash(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            known = self._verified.get(key)
        if known is not None:
            return known
        actual = sha256_file(path)
        with self._lock:
            self._verified[key] = actual
        return actual
