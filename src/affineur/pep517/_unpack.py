"""Unpacking source archives safely, and reading PKG-INFO from one without unpacking.

Archives are hostile input: an sdist is whatever its uploader made.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from affineur.errors import AffineurError
from affineur.index import SDIST_SUFFIXES

if TYPE_CHECKING:
    pass

__all__ = ["read_pkg_info", "safe_extract"]

_MAX_PKG_INFO = 16 << 20
_CHUNK = 1 << 20


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


def safe_extract(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into ``dest`` and return its single top-level directory.

    Everything is unpacked into a temporary directory inside ``dest`` and renamed
    into place at the end, so a failure leaves nothing half-written.
    """
    kind = _archive_kind(archive)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest))
    try:
        try:
            top = _extract_tar(archive, tmp) if kind == "tar" else _extract_zip(archive, tmp)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
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
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_tar(archive: Path, tmp: Path) -> str:
    with tarfile.open(archive, "r:*") as tar:
        pairs = list(_tar_members(archive, tar))
        top = _check_members(archive, [m for m, _ in pairs])
        # The "data" filter is a second line of defence, not the only one: it is
        # missing on Pythons before 3.11.4/3.12, it only keeps links inside the
        # destination (not inside the one top directory), and our checks above
        # run before a single byte is written and name the offending member.
        if hasattr(tarfile, "data_filter"):
            try:
                tar.extractall(tmp, filter="data")
            except tarfile.FilterError as exc:
                member = getattr(getattr(exc, "tarinfo", None), "name", "?")
                raise _unsafe(archive, member, f"was refused: {exc}") from exc
        else:  # pragma: no cover - only on old interpreters
            tar.extractall(tmp)  # members were checked above
    _check_links_resolved(archive, tmp, top)
    return top


def _check_links_resolved(archive: Path, tmp: Path, top: str) -> None:
    """Resolve every symlink on disk: chains of in-tree links may still lead out."""
    root = (tmp / top).resolve()
    for dirpath, dirnames, filenames in os.walk(tmp / top):
        for entry in (*dirnames, *filenames):
            path = Path(dirpath, entry)
            if path.is_symlink():
                real = path.resolve()
                if real != root and root not in real.parents:
                    raise _unsafe(archive, str(path.relative_to(tmp)), "resolves outside the tree")


def _extract_zip(archive: Path, tmp: Path) -> str:
    with zipfile.ZipFile(archive) as zf:
        pairs = list(_zip_members(archive, zf))
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
    return top


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
        with tarfile.open(archive, "r:*") as tar:
            for tmember, tinfo in _tar_members(archive, tar):
                if _is_pkg_info(tmember) and tinfo.size <= _MAX_PKG_INFO:
                    stream = tar.extractfile(tinfo)
                    return stream.read() if stream is not None else None
            return None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise AffineurError(
            f"{archive.name}: cannot read: {exc}",
            file=str(archive),
            stage="unpack",
            hint="the file may be truncated; delete it to download it again",
        ) from exc


def _is_pkg_info(member: _Member) -> bool:
    parts = member.name.split("/")
    return member.kind == "file" and len(parts) == 2 and parts[1] == "PKG-INFO"
