"""Unpacking source archives safely, and reading PKG-INFO from one without unpacking.

Archives are hostile input: an sdist is whatever its uploader made.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import posixpath
import shutil
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from affineur.config import Settings
from affineur.errors import AffineurError
from affineur.index import SDIST_SUFFIXES

__all__ = [
    "UnpackLimits",
    "Unpacked",
    "archive_mentions",
    "read_pkg_info",
    "safe_extract",
    "unpack_limits",
    "unpack_sdist",
]

_MAX_PKG_INFO = 16 << 20
_CHUNK = 1 << 20
_MB = 1 << 20


@dataclass(frozen=True)
class UnpackLimits:
    """How much an archive may unpack to: a decompression bomb fails before it fills a disk.

    ``max_ratio`` (unpacked bytes per archive byte) applies only past
    ``ratio_floor`` bytes: small archives of repetitive text legitimately
    compress far better than big ones, and cost nothing to unpack anyway.
    Overrides raise the limits per package (``max_unpacked_mb``,
    ``max_compression_ratio``) for sdists that really are that big.
    """

    max_bytes: int = 4096 * _MB
    max_ratio: float = 100.0
    max_members: int = 250_000
    ratio_floor: int = 32 * _MB

    @classmethod
    def of(cls, max_unpacked_mb: float | None, max_ratio: float | None) -> UnpackLimits:
        default = cls()
        return cls(
            max_bytes=int(max_unpacked_mb * _MB) if max_unpacked_mb else default.max_bytes,
            max_ratio=float(max_ratio) if max_ratio else default.max_ratio,
        )

    def allowed(self, archive_size: int) -> int:
        """The most bytes an archive of ``archive_size`` bytes may unpack to."""
        by_ratio = max(int(self.max_ratio * archive_size), self.ratio_floor)
        return min(self.max_bytes, by_ratio)

    def problem(self, archive: Path) -> AffineurError:
        """The error for an archive that unpacks to more than :meth:`allowed`."""
        size = archive.stat().st_size
        allowed = self.allowed(size)
        if allowed >= self.max_bytes:
            return AffineurError(
                f"unpacks to more than {self.max_bytes // _MB} MB; refused",
                file=str(archive),
                stage="unpack",
                hint=(
                    "if this sdist is really that big, raise 'max_unpacked_mb' in its "
                    "override (overrides/<name>.yaml)"
                ),
            )
        return AffineurError(
            f"unpacks to more than {allowed // _MB} MB from {_human(size)}, a compression "
            f"ratio over {self.max_ratio:g}; refused (a decompression bomb?)",
            file=str(archive),
            stage="unpack",
            hint=(
                "if this sdist is genuine, raise 'max_compression_ratio' in its override "
                "(overrides/<name>.yaml)"
            ),
        )


def unpack_limits(settings: Settings) -> UnpackLimits:
    """The limits one package's settings give its sdist."""
    return UnpackLimits.of(settings.max_unpacked_mb, settings.max_compression_ratio)


def _human(size: int) -> str:
    if size >= _MB:
        return f"{size / _MB:.1f} MB"
    return f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} bytes"


class _TooBig(Exception):
    """The decompressed stream went past its limit (raised from inside tarfile)."""


class _Bounded(io.RawIOBase):
    """A decompressed stream that refuses to go past ``limit`` bytes.

    tarfile reads every header of a compressed tar by decompressing the whole
    stream, so declared member sizes cannot be checked before that work is
    done. This caps the work itself: neither reading nor seeking may pass the
    limit, whatever the headers claim.
    """

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self._inner = inner
        self._limit = limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._inner.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._inner.tell() + offset
        if whence == io.SEEK_END or target > self._limit:
            raise _TooBig
        return self._inner.seek(target)

    def read(self, size: int = -1) -> bytes:
        room = self._limit - self._inner.tell()
        data = self._inner.read(room + 1 if size < 0 or size > room else size)
        if len(data) > room:
            raise _TooBig
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


# A decompressed archive up to this size is held in memory, a bigger one in a file.
_SPOOL_IN_MEMORY = 64 * _MB


@contextlib.contextmanager
def _open_tar(archive: Path, limit: int, *, whole: bool = False) -> Iterator[tarfile.TarFile]:
    """``archive`` as a tar whose decompressed stream stops at ``limit`` bytes.

    ``whole``: the caller reads every member (to unpack them). The archive is then
    decompressed once, in large blocks, into a spooled file: tarfile reads a
    compressed stream in small pieces through Python code, and unpacking after
    listing seeks back to the start, which decompresses it all a second time.
    """
    with archive.open("rb") as probe:
        magic = probe.read(6)
    with contextlib.ExitStack() as stack:
        inner: Any
        compressed = True
        if magic.startswith(b"\x1f\x8b"):
            inner = stack.enter_context(gzip.open(archive, "rb"))
        elif magic.startswith(b"BZh"):
            inner = stack.enter_context(bz2.open(archive, "rb"))
        elif magic.startswith(b"\xfd7zXZ\x00"):
            inner = stack.enter_context(lzma.open(archive, "rb"))
        else:
            inner = stack.enter_context(archive.open("rb"))
            compressed = False
        # The tar headers themselves (512 bytes each) and the end-of-archive
        # padding come on top of the file contents the limit is about.
        bounded: IO[bytes] = _Bounded(inner, limit + 64 * _MB)  # type: ignore[assignment]
        if whole and compressed:
            spool = stack.enter_context(tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY))
            shutil.copyfileobj(bounded, spool, _CHUNK)
            spool.seek(0)
            bounded = spool
        yield stack.enter_context(tarfile.open(fileobj=bounded, mode="r:"))


def archive_mentions(archive: Path, needle: bytes, limits: UnpackLimits | None = None) -> bool:
    """Whether ``needle`` occurs anywhere in the archive's (decompressed) bytes.

    False proves that no member has that name: a tar stores every name (long ones
    in extension headers) as plain bytes, a zip lists them uncompressed. Far cheaper
    than listing the members, which parses every header in Python, to learn that
    an sdist has no Cargo.lock. True may be a false alarm (a file that mentions the
    name), and so is an archive too big to scan within ``limits``.
    """
    if len(needle) == 0:
        return True
    if _archive_kind(archive) == "zip":
        with contextlib.suppress(OSError, zipfile.BadZipFile), zipfile.ZipFile(archive) as zf:
            return any(needle.decode("utf-8", "replace") in n for n in zf.namelist())
        return True
    limit = (limits or UnpackLimits()).allowed(archive.stat().st_size) + 64 * _MB
    with archive.open("rb") as probe:
        magic = probe.read(6)
    opener: Any = open
    if magic.startswith(b"\x1f\x8b"):
        opener = gzip.open
    elif magic.startswith(b"BZh"):
        opener = bz2.open
    elif magic.startswith(b"\xfd7zXZ\x00"):
        opener = lzma.open
    seen, tail = 0, b""
    try:
        with opener(archive, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                seen += len(chunk)
                window = tail + chunk
                if needle in window or seen > limit:
                    return True
                tail = window[-(len(needle) - 1) :] if len(needle) > 1 else b""
    except (OSError, EOFError, lzma.LZMAError):
        return True  # damaged: whoever unpacks it reports that
    return False


@dataclass(frozen=True)
class _Member:
    """One archive entry, described the same way for tar and zip."""

    name: str  # normalised: no leading "./", no empty or "." parts
    kind: str  # "file", "dir", "symlink", "hardlink", "special"
    link: str = ""


def _archive_kind(archive: Path) -> str:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if any(name.endswith(s) for s in SDIST_SUFFIXES):
        return "tar"
    raise AffineurError(
        f"{archive.name}: not an sdist archive (expected one of {', '.join(SDIST_SUFFIXES)})",
        file=str(archive),
        stage="unpack",
    )


def _unsafe(archive: Path, member: str, why: str) -> AffineurError:
    return AffineurError(
        f"{archive.name}: member {member!r} {why}",
        file=str(archive),
        stage="unpack",
        hint="the archive is malformed or malicious; it was not unpacked",
    )


def _normalise(archive: Path, raw: str) -> str:
    """The member name as relative parts joined by '/', or an error if it escapes."""
    # Backslashes count as separators here: a Windows-made archive could use them
    # to hide a '..'.
    text = raw.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise _unsafe(archive, raw, "is an absolute path")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _unsafe(archive, raw, "contains '..'")
    return "/".join(parts)


def _tar_members(archive: Path, tar: tarfile.TarFile) -> Iterator[tuple[_Member, tarfile.TarInfo]]:
    for info in tar.getmembers():
        name = _normalise(archive, info.name)
        if info.issym():
            kind, link = "symlink", info.linkname
        elif info.islnk():
            kind, link = "hardlink", info.linkname
        elif info.isdir():
            kind, link = "dir", ""
        elif info.isfile():
            kind, link = "file", ""
        else:
            kind, link = "special", ""
        yield _Member(name, kind, link), info


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> Iterator[tuple[_Member, zipfile.ZipInfo]]:
    for info in zf.infolist():
        name = _normalise(archive, info.filename)
        # zipfile writes a symlink entry as a plain file holding the target, which
        # is harmless, so only directories and files are told apart.
        yield _Member(name, "dir" if info.is_dir() else "file"), info


def _check_members(archive: Path, members: list[_Member]) -> str:
    """Our own safety policy, applied before anything is written; returns the top dir.

    Links must stay inside the single top-level directory, not merely inside the
    destination; no member may be written through a symlink (so a link cannot be
    used as a stepping stone whatever it points at); devices and fifos have no
    place in a source tree.
    """
    tops = {m.name.split("/")[0] for m in members if m.name}
    if len(tops) != 1:
        found = ", ".join(sorted(tops)[:5]) or "nothing"
        raise AffineurError(
            f"{archive.name}: expected one top-level directory, found {found}",
            file=str(archive),
            stage="unpack",
        )
    top = tops.pop()
    symlinks = {m.name for m in members if m.kind == "symlink"}
    for m in members:
        if not m.name:
            continue
        if m.name == top and m.kind != "dir":
            raise AffineurError(
                f"{archive.name}: the top-level entry {top!r} is not a directory",
                file=str(archive),
                stage="unpack",
            )
        if m.kind == "special":
            raise _unsafe(archive, m.name, "is a device, fifo or other special file")
        parts = m.name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in symlinks:
                raise _unsafe(archive, m.name, "would be written through a symlink")
        if m.kind in ("symlink", "hardlink"):
            if m.link.startswith("/") or not m.link:
                raise _unsafe(archive, m.name, f"links to the absolute path {m.link!r}")
            # A symlink is relative to its own directory, a hard link to the archive root.
            base = posixpath.dirname(m.name) if m.kind == "symlink" else ""
            target = posixpath.normpath(posixpath.join(base, m.link.replace("\\", "/")))
            if target != top and not target.startswith(top + "/"):
                raise _unsafe(archive, m.name, f"links outside the tree, to {m.link!r}")
    return top


@dataclass(frozen=True)
class Unpacked:
    """An unpacked sdist: its top-level directory, and the time of its newest member
    (seconds since the epoch, 0 for none), which builds take as SOURCE_DATE_EPOCH."""

    root: Path
    newest: int


def safe_extract(archive: Path, dest: Path, limits: UnpackLimits | None = None) -> Path:
    """Unpack ``archive`` into ``dest`` and return its single top-level directory.

    Everything is unpacked into a temporary directory inside ``dest`` and renamed
    into place at the end, so a failure leaves nothing half-written. Sizes are
    checked against ``limits`` before a byte is written.
    """
    return unpack_sdist(archive, dest, limits).root


def unpack_sdist(archive: Path, dest: Path, limits: UnpackLimits | None = None) -> Unpacked:
    """:func:`safe_extract`, also telling the newest member time it read on the way
    (reading the archive again for it costs a second decompression)."""
    kind = _archive_kind(archive)
    limits = limits or UnpackLimits()
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest))
    try:
        try:
            if kind == "tar":
                top, newest = _extract_tar(archive, tmp, limits)
            else:
                top, newest = _extract_zip(archive, tmp, limits)
        except _TooBig:
            raise limits.problem(archive) from None
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, lzma.LZMAError) as exc:
            raise AffineurError(
                f"{archive.name}: cannot unpack: {exc}",
                file=str(archive),
                stage="unpack",
                hint="the file may be truncated; delete it to download it again",
            ) from exc
        target = dest / top
        if target.exists():
            raise AffineurError(
                f"{archive.name}: {target} already exists",
                file=str(archive),
                stage="unpack",
            )
        (tmp / top).rename(target)
        return Unpacked(target, newest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_sizes(archive: Path, sizes: list[int], limits: UnpackLimits) -> None:
    if len(sizes) > limits.max_members:
        raise AffineurError(
            f"holds {len(sizes)} entries, more than {limits.max_members}; refused",
            file=str(archive),
            stage="unpack",
        )
    if sum(sizes) > limits.allowed(archive.stat().st_size):
        raise limits.problem(archive)


def _extract_tar(archive: Path, tmp: Path, limits: UnpackLimits) -> tuple[str, int]:
    with _open_tar(archive, limits.allowed(archive.stat().st_size), whole=True) as tar:
        pairs = list(_tar_members(archive, tar))
        newest = max((int(info.mtime) for _, info in pairs), default=0)
        _check_sizes(archive, [info.size if info.isfile() else 0 for _, info in pairs], limits)
        top = _check_members(archive, [m for m, _ in pairs])
        # The "data" filter is a second line of defence, not the only one: it is
        # missing on Pythons before 3.11.4/3.12, it only keeps links inside the
        # destination (not inside the one top directory), and our checks above
        # run before a single byte is written and name the offending member.
        if hasattr(tarfile, "data_filter"):
            try:
                tar.extractall(tmp, filter=_data_filter)
            except tarfile.FilterError as exc:
                member = getattr(getattr(exc, "tarinfo", None), "name", "?")
                raise _unsafe(archive, member, f"was refused: {exc}") from exc
        else:  # pragma: no cover - only on old interpreters
            tar.extractall(tmp)  # members were checked above
    _check_links_resolved(archive, tmp, top)
    return top, newest


def _data_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's "data" filter, without its name checks for plain files and folders.

    Those checks resolve the real path of every member, a system call per path
    component, which made them a good part of the cost of unpacking an sdist of
    many small files; and ``_check_members`` already refused what they look for
    (an absolute name, '..', a member written through a link) before anything
    was unpacked into the new, empty directory. Links and anything else still go
    through the filter itself, and its rules for modes and owners are kept whole.
    """
    if not (member.isreg() or member.isdir()):
        return tarfile.data_filter(member, dest)
    mode: int | None = member.mode & 0o755
    if member.isreg():
        assert mode is not None
        if not mode & 0o100:
            mode &= ~0o111
        mode |= 0o600
    else:
        mode = None
    return member.replace(mode=mode, uid=None, gid=None, uname=None, gname=None, deep=False)  # type: ignore[arg-type]


def _check_links_resolved(archive: Path, tmp: Path, top: str) -> None:
    """Resolve every symlink on disk: chains of in-tree links may still lead out.

    The walk asks each directory listing what its entries are (the kind comes with
    the listing), instead of a system call and a path object per file to learn that
    one of thousands is a link. Folders are visited in ``os.walk``'s order, and
    links to folders are checked, never followed.
    """
    root = (tmp / top).resolve()
    pending = [str(tmp / top)]
    while pending:
        try:
            with os.scandir(pending.pop()) as listing:
                entries = list(listing)
        except OSError:
            continue  # as os.walk: what cannot be listed holds nothing to check
        folders = []
        for entry in entries:
            if entry.is_symlink():
                real = Path(entry.path).resolve()
                if real != root and root not in real.parents:
                    where = os.path.relpath(entry.path, tmp)
                    raise _unsafe(archive, where, "resolves outside the tree")
            elif entry.is_dir(follow_symlinks=False):
                folders.append(entry.path)
        pending.extend(reversed(folders))


def _extract_zip(archive: Path, tmp: Path, limits: UnpackLimits) -> tuple[str, int]:
    with zipfile.ZipFile(archive) as zf:
        pairs = list(_zip_members(archive, zf))
        # Zip times are local times without a zone, read as the machine's local time.
        newest = max(
            (int(time.mktime((*info.date_time, 0, 0, -1))) for _, info in pairs), default=0
        )
        # zipfile never inflates a member past its declared size, so the sum of
        # declared sizes is a real bound.
        _check_sizes(archive, [info.file_size for _, info in pairs], limits)
        top = _check_members(archive, [m for m, _ in pairs])
        for member, info in pairs:
            if not member.name:
                continue
            out = tmp.joinpath(*member.name.split("/"))
            if member.kind == "dir":
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            # zipfile drops permissions; scripts in sdists (configure, build
            # helpers) need their executable bit back. Nothing else is kept.
            mode = info.external_attr >> 16
            out.chmod(0o755 if mode & 0o111 else 0o644)
    return top, newest


def read_pkg_info(archive: Path) -> bytes | None:
    """``<top>/PKG-INFO`` read straight from the archive, or None if there is none.

    Used for PEP 643 static metadata, where unpacking the whole sdist would be
    wasted work.
    """
    kind = _archive_kind(archive)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                for zmember, zinfo in _zip_members(archive, zf):
                    if _is_pkg_info(zmember) and zinfo.file_size <= _MAX_PKG_INFO:
                        return zf.read(zinfo)
            return None
        limits = UnpackLimits()
        with _open_tar(archive, limits.allowed(archive.stat().st_size)) as tar:
            for tinfo in tar:
                tmember = _Member(_normalise(archive, tinfo.name), "file" if tinfo.isfile() else "")
                if _is_pkg_info(tmember) and tinfo.size <= _MAX_PKG_INFO:
                    stream = tar.extractfile(tinfo)
                    return stream.read() if stream is not None else None
            return None
    except _TooBig:
        # Too big to scan with the default limits: the caller falls back to the
        # metadata hook, which unpacks with the package's own limits (and says so).
        return None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, lzma.LZMAError) as exc:
        raise AffineurError(
            f"{archive.name}: cannot read: {exc}",
            file=str(archive),
            stage="unpack",
            hint="the file may be truncated; delete it to download it again",
        ) from exc


def _is_pkg_info(member: _Member) -> bool:
    parts = member.name.split("/")
    return member.kind == "file" and len(parts) == 2 and parts[1] == "PKG-INFO"
