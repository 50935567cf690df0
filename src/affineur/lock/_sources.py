"""What locking asks of package indexes, and the networked answer.

The locker never talks to an index, a download or an archive directly: it asks a
:class:`LockIndex` for a project's files, a wheel's core metadata, and local
copies of sdists and wheels. :class:`NetworkIndex` answers over the simple API
into the sdist store; tests answer from a frozen JSON index, so resolution,
metadata and graph assembly run with no network and no file system.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from packaging.utils import NormalizedName
from packaging.version import Version

from affineur import graph as g
from affineur.atomic import write_atomic
from affineur.hooks import FetchRequest, PluginHooks
from affineur.index import (
    DistFile,
    Fetcher,
    GitSource,
    IndexClient,
    PluginFetcher,
    SdistStore,
    UpstreamWheels,
    UrlSource,
    attested_by,
    check_plugin_archive,
    git_archive_name,
    plugin_archive_name,
    redact_url,
    sha256_file,
)
from affineur.index import requires_dist as wheel_requires_dist
from affineur.pep517 import CrateStore, read_pkg_info
from affineur.progress import Downloading, Reporter

__all__ = ["LocalSdist", "LocalWheel", "LockIndex", "NetworkIndex"]


@dataclass(frozen=True)
class LocalSdist:
    """An sdist on this machine, checked against ``ref``; ``pkg_info`` is read once."""

    ref: g.FileRef
    path: Path
    pkg_info: bytes | None
    crates: g.VendoredCrates | None = None
    """The Rust crates its Cargo.lock names, vendored beside it (None: it needs none)."""


@dataclass(frozen=True)
class LocalWheel:
    """An upstream wheel taken as it is (``prebuilt``), with its declared dependencies."""

    ref: g.FileRef
    requires_dist: tuple[str, ...]


class LockIndex(Protocol):
    """The package index as stage 1 sees it.

    ``files`` is called once per project per resolution and must be cheap after
    the first call. ``core_metadata`` is one small request. ``sdist``,
    ``sdist_from_url`` and ``prebuilt_wheel`` download (once: the store keeps
    files by name and hash). ``discovery_wheel`` may even build a wheel with pip:
    it serves discovery environments only, and nothing it returns ships.
    """

    def files(self, name: NormalizedName) -> Sequence[DistFile]: ...

    def core_metadata(self, file: DistFile) -> bytes | None: ...

    def upstream_wheel(self, name: NormalizedName, version: Version) -> DistFile | None:
        """The best upstream wheel of exactly this version for the target interpreter."""
        ...

    def prebuilt_wheel(self, file: DistFile) -> LocalWheel: ...

    def discovery_wheel(self, name: NormalizedName, version: Version) -> Path: ...

    def sdist(self, file: DistFile) -> LocalSdist: ...

    def sdist_from_url(self, name: NormalizedName, url: str, sha256: str | None) -> LocalSdist:
        """The sdist at ``url``; held to ``sha256`` when a previous lock recorded one."""
        ...

    def sdist_from_plugin(
        self,
        name: NormalizedName,
        version: str,
        hooks: PluginHooks,
        default: Callable[[], LocalSdist],
    ) -> LocalSdist:
        """The archive a site plugin fetches; ``default`` is the fetch it replaces."""
        ...

    def sdist_from_git(
        self,
        name: NormalizedName,
        version: str,
        url: str,
        ref: str,
        recorded: tuple[g.GitRef, str] | None,
    ) -> tuple[LocalSdist, g.GitRef]:
        """The archive of the commit ``ref`` names, and where it came from.

        ``recorded`` is a previous lock's commit and archive hash for this same
        repository and ref: while the store holds that archive, nothing is fetched.
        """
        ...


class NetworkIndex:
    """A :class:`LockIndex` over the simple API, downloading into the sdist store.

    An sdist whose Cargo.lock names crates gets them vendored into ``crates``
    (from ``crates_registry``, else cargo's own default), so stage 2 needs no network.
    """

    def __init__(
        self,
        client: IndexClient,
        store: SdistStore,
        upstream: UpstreamWheels,
        reporter: Reporter,
        *,
        crates: CrateStore | None = None,
        crates_registry: str | None = None,
        pkg_info: Path | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.upstream = upstream
        self.reporter = reporter
        self.crates = crates
        self.crates_registry = crates_registry
        self.pkg_info = pkg_info
        """Where each sdist's PKG-INFO is kept by the sdist's sha256, if anywhere."""
        # The locker looks ahead in threads, and the resolver asks for an sdist
        # each time it weighs it: one read per sdist hash, and askers at the same
        # time wait for it instead of decompressing the archive again.
        self._pkg_infos: dict[str, bytes | None] = {}
        self._pkg_info_locks: dict[str, threading.Lock] = {}
        self._pkg_info_guard = threading.Lock()

    def files(self, name: NormalizedName) -> Sequence[DistFile]:
        return self.client.project_files(name)

    def core_metadata(self, file: DistFile) -> bytes | None:
        return self.client.core_metadata(file)

    def upstream_wheel(self, name: NormalizedName, version: Version) -> DistFile | None:
        return self.upstream.wheel_file(name, version)

    def prebuilt_wheel(self, file: DistFile) -> LocalWheel:
        assert file.version is not None
        path = self.upstream.fetch(file.project, file.version)
        ref = g.FileRef(file.filename, file.sha256 or sha256_file(path))
        return LocalWheel(ref, tuple(wheel_requires_dist(path)))

    def discovery_wheel(self, name: NormalizedName, version: Version) -> Path:
        return self.upstream.fetch(name, version)

    def sdist(self, file: DistFile) -> LocalSdist:
        path = self._download(file, file.filename, self.client)
        sha = file.sha256 or sha256_file(path)
        local = self._local(file.project, file.filename, sha, self.client)
        # PEP 740: the publishers the index vouches for go into the lock with the hash.
        publishers = attested_by(self.client, file, sha)
        if publishers:
            local = replace(local, ref=replace(local.ref, attested_by=publishers))
        return local

    def sdist_from_url(self, name: NormalizedName, url: str, sha256: str | None) -> LocalSdist:
        source = UrlSource(self.client, url, name)
        path = self._download(source.file(), source.url, source)
        # No index vouches for this file: its hash is recorded on first download,
        # and a later lock holds the file to the hash recorded then.
        return self._local(name, source.filename, sha256 or sha256_file(path), source)

    def sdist_from_git(
        self,
        name: NormalizedName,
        version: str,
        url: str,
        ref: str,
        recorded: tuple[g.GitRef, str] | None,
    ) -> tuple[LocalSdist, g.GitRef]:
        if recorded is not None:
            git, sha256 = recorded
            filename = git_archive_name(name, version, git.commit)
            if self.store.path(filename).exists():
                # A re-lock keeps the commit it had: a moved tag is news for a
                # person to accept (delete the archive, or the lock's node), not a
                # silent change inside an unrelated re-lock.
                source = GitSource(name, version, url, ref, git.commit)
                return self._local(name, filename, sha256, source), git
        self.reporter.report(Downloading(f"{redact_url(url)}@{ref}"))
        self.store.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".git-", dir=self.store.root) as tmp:
            commit, archive = GitSource(name, version, url, ref).checkout(Path(tmp))
            sha256 = sha256_file(archive)
            dest = self.store.path(archive.name)
            if not dest.exists():
                archive.replace(dest)
        git = g.GitRef(redact_url(url), ref, commit)
        # An archive already in the store must be this one: ensure() says so if not.
        return self._local(name, dest.name, sha256, GitSource(name, version, url, ref, commit)), git

    def sdist_from_plugin(
        self,
        name: NormalizedName,
        version: str,
        hooks: PluginHooks,
        default: Callable[[], LocalSdist],
    ) -> LocalSdist:
        made: list[LocalSdist] = []

        def run_default() -> Path:
            made.append(default())
            return made[-1].path

        self.store.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".plugin-", dir=self.store.root) as tmp:
            got = hooks.fetch(FetchRequest(name, version, Path(tmp), run_default))
            if made and got == made[-1].path:
                return made[-1]
            check_plugin_archive(hooks, name, version, got)
            sha256 = sha256_file(got)
            filename = plugin_archive_name(hooks.name, name, version, got.name, sha256)
            dest = self.store.path(filename)
            if not dest.exists():
                # Whole or not at all: the store never shows a half-copied file.
                shutil.copyfile(got, Path(tmp) / ".part")
                (Path(tmp) / ".part").replace(dest)
        return self._local(name, filename, sha256, PluginFetcher(hooks, name, version, self.client))

    def _local(self, name: str, filename: str, sha256: str, fetcher: Fetcher) -> LocalSdist:
        path = self.store.ensure(name, filename, sha256, fetcher)
        crates = None
        if self.crates is not None:
            crates = self.crates.vendor(name, path, sha256, registry=self.crates_registry)
        return LocalSdist(g.FileRef(filename, sha256), path, self._pkg_info(path, sha256), crates)

    def _pkg_info(self, sdist: Path, sha256: str) -> bytes | None:
        with self._pkg_info_guard:
            lock = self._pkg_info_locks.setdefault(sha256, threading.Lock())
        with lock:
            if sha256 not in self._pkg_infos:
                self._pkg_infos[sha256] = self._read_pkg_info(sdist, sha256)
            return self._pkg_infos[sha256]

    def _read_pkg_info(self, sdist: Path, sha256: str) -> bytes | None:
        """The sdist's PKG-INFO, read from the archive once per sdist hash.

        Finding it can mean decompressing the whole archive (many sdists store it
        last), and every re-lock asks again for every package, changed or not.
        The sdist was checked against ``sha256``, so the hash names its content.
        """
        if self.pkg_info is None:
            return read_pkg_info(sdist)
        found, absent = self.pkg_info / sha256, self.pkg_info / f"{sha256}.none"
        if found.is_file():
            return found.read_bytes()
        if absent.is_file():
            return None
        data = read_pkg_info(sdist)
        # Only a shortcut: a cache folder that cannot be written costs time, not the lock.
        with contextlib.suppress(OSError):
            write_atomic(absent if data is None else found, data or b"")
        return data

    def _download(self, file: DistFile, shown: str, fetcher: Fetcher) -> Path:
        """Into the sdist store unless already there (its hash is checked by the caller)."""
        path = self.store.path(file.filename)
        if not path.exists():
            self.reporter.report(Downloading(shown))
            path.parent.mkdir(parents=True, exist_ok=True)
            fetcher.download(file, path.parent)
        return path
