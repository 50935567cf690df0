"""The build cache in shared storage, in front of the local one (like Bazel's remote cache).

Any filesystem fsspec knows serves: ``s3://bucket/prefix`` (AWS or any
S3-compatible store, through s3fs), ``gs://`` (gcsfs), ``file:///shared/path``,
or a read-only ``https://`` mirror of one of those. Layout under the URL::

    v1/builds/<build-key>/entry.json        written last: an entry exists once this does
    v1/builds/<build-key>/<sha256>.whl      the wheel, named by its own hash
    v1/builds/<build-key>/<sha256>.log      its build log
    v1/sdists/<sha256>/<filename>           source archives, for builders with no index access

Naming the objects by their hash means two machines that build one key at the
same time never overwrite each other's wheel: whichever ``entry.json`` lands
last names a wheel that is whole. A reader trusts nothing it downloads: the
entry is checked against its schema and against the key and package asked for,
and the wheel against the entry's size and sha256 and against the build key
stamped inside it. A bad entry is reported and ignored, never used.

Credentials are the storage library's business (environment, ``~/.aws``,
instance roles); they are never read, stored or printed here, and the build
environment is filtered before any backend runs.
"""

from __future__ import annotations

import json
import threading
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from affineur.build._cache import BuildCache, CacheEntry
from affineur.build._key import BuildKey
from affineur.build._provenance import PROVENANCE_SUFFIX, statement_bytes
from affineur.config import RemoteCacheSetting, validate
from affineur.errors import AffineurError
from affineur.index import sha256_file
from affineur.limits import TOO_DEEP, too_deep
from affineur.progress import Notice, NullReporter, Reporter

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["RemoteCache", "RemoteEntryRejected"]

LAYOUT = "v1"
ENTRY = "entry.json"
FORMAT = 1


class RemoteEntryRejected(Exception):
    """A remote entry that must not be used; the message says why (for the report)."""


def _filesystem(setting: RemoteCacheSetting) -> tuple[AbstractFileSystem, str]:
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise AffineurError(
            "a remote cache needs affineur's 'remote' extra",
            hint="pip install 'affineur[remote]'",
            stage="config",
        ) from None
    try:
        options = _thaw(setting.options)
        if setting.url.startswith(("file:", "local:")):
            # Entries go into new folders; local paths, unlike object keys, need them made.
            options.setdefault("auto_mkdir", True)
        fs, root = url_to_fs(setting.url, **options)
    except ImportError as exc:
        # fsspec names the package a protocol needs (s3fs, gcsfs, aiohttp, ...).
        raise AffineurError(
            f"remote cache {setting.url}: {exc}",
            hint="pip install 'affineur[gcs]'"
            if setting.url.startswith(("gs:", "gcs:"))
            else "pip install 'affineur[remote]'",
            stage="config",
        ) from None
    except (ValueError, TypeError) as exc:
        raise AffineurError(
            f"remote cache {setting.url}: {exc}", hint=f"check {setting.origin}", stage="config"
        ) from None
    return fs, str(root).rstrip("/")


class RemoteCache:
    """Looks build keys up in shared storage, and uploads what this machine built.

    Safe to share between doit's worker threads. Storage failures never fail a
    build: a failed upload is a warning, and storage that cannot be reached is
    reported once and then left alone for the rest of the run (asking it again
    for every package would only add its timeouts to every build).
    """

    def __init__(
        self,
        setting: RemoteCacheSetting,
        *,
        reporter: Reporter | None = None,
        filesystem: tuple[AbstractFileSystem, str] | None = None,
    ) -> None:
        """``filesystem`` (an fsspec filesystem and the root path in it) replaces the one
        the URL names, for tests."""
        self.setting = setting
        self.reporter: Reporter = reporter or NullReporter()
        self._fs: AbstractFileSystem | None = filesystem[0] if filesystem else None
        self._root = filesystem[1] if filesystem else ""
        self._lock = threading.Lock()
        self._down: str | None = None
        self._known: set[str] = set()
        """Objects known to be present, so repeated uploads of a build tool cost nothing."""

    @property
    def url(self) -> str:
        return self.setting.url

    @property
    def writable(self) -> bool:
        return self.setting.writable

    @property
    def fs(self) -> AbstractFileSystem:
        with self._lock:
            if self._fs is None:
                self._fs, self._root = _filesystem(self.setting)
            return self._fs

    def _path(self, *parts: str) -> str:
        self.fs  # noqa: B018 -- resolving the filesystem also sets the root
        return "/".join((self._root, LAYOUT, *parts))

    def _entry_dir(self, key: BuildKey) -> str:
        return self._path("builds", key)

    # --- reading --------------------------------------------------------------------------

    def fetch(
        self, key: BuildKey, local: BuildCache, *, name: str, version: str
    ) -> CacheEntry | None:
        """The entry for ``key`` copied into ``local`` and verified; None on a miss.

        A corrupt or mismatched entry is reported and counts as a miss.
        """
        if self._down is not None:
            return None
        base = self._entry_dir(key)
        try:
            raw = self.fs.cat_file(f"{base}/{ENTRY}")
        except FileNotFoundError:
            return None
        except Exception as exc:  # any storage error: the library's own types vary
            self._unreachable("read", exc)
            return None
        try:
            return self._take(key, base, raw, local, name=name, version=version)
        except RemoteEntryRejected as exc:
            self.reporter.report(
                Notice(f"remote cache: ignored the entry of {name}=={version} ({key[:12]}): {exc}")
            )
            return None

    def _take(
        self,
        key: BuildKey,
        base: str,
        raw: bytes,
        local: BuildCache,
        *,
        name: str,
        version: str,
    ) -> CacheEntry:
        entry = _parse_entry(raw, where=f"{base}/{ENTRY}")
        if entry["build_key"] != key:
            raise RemoteEntryRejected(f"it is the entry of build key {entry['build_key'][:12]}")
        if canonicalize_name(entry["name"]) != canonicalize_name(name) or (
            entry["version"] != version
        ):
            raise RemoteEntryRejected(f"it holds {entry['name']}=={entry['version']}")
        if entry["record"].get("substituted"):
            raise RemoteEntryRejected("it holds an upstream wheel that stood in for a failure")
        with local.staging(key) as staging:
            wheel = staging / entry["wheel"]
            try:
                self.fs.get_file(f"{base}/{entry['wheel_object']}", str(wheel))
            except FileNotFoundError:
                raise RemoteEntryRejected("its wheel is missing") from None
            except Exception as exc:
                raise RemoteEntryRejected(f"its wheel could not be downloaded ({exc})") from None
            size = wheel.stat().st_size
            if size != entry["size"]:
                raise RemoteEntryRejected(
                    f"the wheel has {size} bytes, the entry says {entry['size']}"
                )
            actual = sha256_file(wheel)
            if actual != entry["sha256"]:
                raise RemoteEntryRejected(
                    f"the wheel's sha256 is {actual}, the entry says {entry['sha256']}"
                )
            stamped = _stamped_key(wheel)
            if stamped is not None and stamped != key:
                raise RemoteEntryRejected(f"the wheel was built for build key {stamped[:12]}")
            if entry["log_object"]:
                try:
                    self.fs.get_file(f"{base}/{entry['log_object']}", str(staging / "build.log"))
                except Exception:  # a lost log costs nothing a build needs
                    (staging / "build.log").unlink(missing_ok=True)
            statement = entry.get("provenance")
            if statement is not None:
                if statement["subject"][0]["digest"]["sha256"] != entry["sha256"]:
                    raise RemoteEntryRejected("its provenance names another wheel")
                (staging / f"{entry['wheel']}{PROVENANCE_SUFFIX}").write_bytes(
                    statement_bytes(statement)
                )
            record = {**entry["record"], "wheel": entry["wheel"], "sha256": entry["sha256"]}
            record["remote"] = {"url": self.url}
            return local.commit(key, staging, record)

    def has(self, key: BuildKey) -> bool:
        """Whether an entry for ``key`` is there (not verified: :meth:`fetch` does that)."""
        return self._exists(f"{self._entry_dir(key)}/{ENTRY}")

    def _exists(self, path: str) -> bool:
        if path in self._known:
            return True
        try:
            found = bool(self.fs.exists(path))
        except Exception as exc:
            self._unreachable("read", exc)
            return False
        if found:
            self._known.add(path)
        return found

    # --- writing --------------------------------------------------------------------------

    def push(self, entry: CacheEntry) -> bool:
        """Upload a local entry; False (with a warning) when it could not be.

        Substitutes (test mode's upstream stand-ins) are never shared.
        """
        if not self.writable or self._down is not None:
            return False
        record = entry.record()
        if record.get("substituted"):
            return False
        base = self._entry_dir(entry.key)
        if self._exists(f"{base}/{ENTRY}"):
            return True
        wheel = entry.wheel
        sha256 = sha256_file(wheel)
        if record.get("sha256") not in (None, sha256):
            self.reporter.report(
                Notice(
                    f"remote cache: not uploading {wheel.name}: it differs from its cache record"
                )
            )
            return False
        log = entry.log if entry.log.is_file() else None
        data = {
            "format": FORMAT,
            "build_key": entry.key,
            "name": record["name"],
            "version": record["version"],
            "wheel": wheel.name,
            "sha256": sha256,
            "size": wheel.stat().st_size,
            "wheel_object": f"{sha256}.whl",
            "log_object": f"{sha256_file(log)}.log" if log else None,
            "record": record,
        }
        if entry.provenance is not None:
            # Travels with the wheel: the statement is the original build's.
            data["provenance"] = json.loads(entry.provenance.read_bytes())
        validate(data, "remote-entry", file=f"{base}/{ENTRY}")
        try:
            self.fs.put_file(str(wheel), f"{base}/{data['wheel_object']}")
            if log is not None:
                self.fs.put_file(str(log), f"{base}/{data['log_object']}")
            self._put_last(f"{base}/{ENTRY}", _dumps(data))
        except Exception as exc:
            self.reporter.report(
                Notice(
                    f"remote cache: could not upload {wheel.name} to {self.url} ({exc})",
                    warning=True,
                )
            )
            return False
        self._known.add(f"{base}/{ENTRY}")
        return True

    def _put_last(self, path: str, data: bytes) -> None:
        """Write the object that makes an entry visible, whole or not at all."""
        if "file" in _protocols(self.fs):
            # On a plain filesystem a reader could see a half-written file; a
            # rename is atomic. Object stores only ever show whole objects.
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)
        else:
            self.fs.pipe_file(path, data)

    # --- source archives (for builders that share nothing but this storage) ---------------

    def _sdist(self, sha256: str, filename: str) -> str:
        return self._path("sdists", sha256.lower(), filename)

    def push_sdist(self, path: Path, sha256: str) -> None:
        """Upload a verified source archive (raises: a remote builder cannot do without it)."""
        target = self._sdist(sha256, path.name)
        if self._exists(target):
            return
        try:
            self.fs.put_file(str(path), target)
        except Exception as exc:
            raise AffineurError(
                f"cannot upload {path.name} to the remote cache {self.url}: {exc}",
                stage="download",
            ) from None
        self._known.add(target)

    def fetch_sdist(self, filename: str, sha256: str, dest: Path) -> Path:
        """Download a source archive into ``dest``; the caller's store verifies its hash."""
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / filename
        try:
            self.fs.get_file(self._sdist(sha256, filename), str(target))
        except Exception as exc:
            target.unlink(missing_ok=True)
            raise AffineurError(
                f"{filename} is not in the remote cache {self.url} ({exc})",
                stage="download",
                hint="the run that submits builds uploads their sources first",
            ) from None
        return target

    def _unreachable(self, what: str, exc: Exception) -> None:
        with self._lock:
            if self._down is not None:
                return
            self._down = str(exc) or type(exc).__name__
        self.reporter.report(
            Notice(
                f"remote cache {self.url} cannot be {what} ({self._down}); "
                "going on without it for this run",
                warning=True,
            )
        )


def _thaw(options: Mapping[str, Any]) -> dict[str, Any]:
    """Plain dicts all the way down: storage libraries copy and update their options."""
    return {k: _thaw(v) if isinstance(v, Mapping) else v for k, v in options.items()}


def _protocols(fs: AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _dumps(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _parse_entry(raw: bytes, *, where: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
        if too_deep(data):
            raise RecursionError
    except RecursionError:
        raise RemoteEntryRejected(f"entry.json is {TOO_DEEP}") from None
    except ValueError as exc:
        raise RemoteEntryRejected(f"entry.json is not JSON ({exc})") from None
    try:
        validate(data, "remote-entry", file=where)
    except AffineurError as exc:
        detail = exc.causes[0] if exc.causes else exc.one_line()
        raise RemoteEntryRejected(f"entry.json does not match its schema: {detail}") from None
    if (
        data["record"].get("build_key") != data["build_key"]
        or data["record"].get("wheel") != data["wheel"]
    ):
        raise RemoteEntryRejected("entry.json and its build record disagree")
    result: dict[str, Any] = data
    return result


def _stamped_key(wheel: Path) -> str | None:
    """The build key affineur stamped into the wheel (None for an upstream wheel)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if n.endswith(".dist-info/affineur/build.json")]
            if not names:
                return None
            record = json.loads(zf.read(names[0]))
    except (zipfile.BadZipFile, ValueError, OSError, RecursionError) as exc:
        raise RemoteEntryRejected(f"the wheel is not a readable zip file ({exc!r})") from None
    key = record.get("build_key") if isinstance(record, dict) else None
    return str(key) if key is not None else None
