"""Publish a lock's wheels from the cache as a PEP 503 index.

``dist/<collection>/<variant>/`` holds ``files/`` (the wheels) and ``simple/``
(the pages), so ``pip install --index-url file://…/simple NAME`` works offline.
The directory is built beside the old one and swapped in, so a reader never
sees half an index.

Each wheel is its own copy (a reflink where the file system has them), mode
0644 so a web server running as another user can serve it, and never a hard
link: a shared inode would let anything that writes to the published file
change the cache entry, and the other way round. The copy is hashed and must
match the sha256 in the cache record, so a wheel damaged since its build is
refused here, never published.

Beside each wheel built here goes its provenance statement,
``<wheel>.provenance.json``, signed into a DSSE envelope when a key is given;
an upstream wheel (prebuilt) has none.
"""

from __future__ import annotations

import fcntl
import html
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from affineur.build._cache import CacheEntry
from affineur.build._provenance import (
    PROVENANCE_SUFFIX,
    read_provenance,
    sign_statement,
    statement_bytes,
)
from affineur.errors import AffineurError
from affineur.index import read_metadata, sha256_file

__all__ = ["PUBLISHED_MODE", "index_holds", "publish_index"]

PUBLISHED_MODE = 0o644

# ioctl(FICLONE): share the blocks, not the inode (btrfs, XFS, bcachefs...).
_FICLONE = 0x40049409


def _copy(src: Path, dst: Path) -> None:
    with src.open("rb") as source, dst.open("xb") as target:
        try:
            fcntl.ioctl(target.fileno(), _FICLONE, source.fileno())
            return
        except OSError:
            pass
        shutil.copyfileobj(source, target, 1 << 20)


def index_holds(dest: Path, wheels: Iterable[tuple[str, int]]) -> bool:
    """Whether the index in ``dest`` still holds each wheel (file name, size) and its project page.

    The publish task's target is the root page alone: without this check, a wheel
    or a project page removed from a published index (or a wheel cut short) stayed
    missing until the lock changed. Names and sizes only, read from two folder
    listings and one stat per page: it runs on every no-op the long way.
    """
    try:
        with os.scandir(dest / "files") as found:
            sizes = {e.name: e.stat().st_size for e in found if e.name.endswith(".whl")}
    except OSError:
        return False
    projects = set()
    for name, size in wheels:
        if sizes.get(name) != size:
            return False
        projects.add(parse_wheel_filename(name)[0])
    simple = dest / "simple"
    return all((simple / project / "index.html").is_file() for project in projects)


def _page(title: str, links: list[str]) -> str:
    body = "\n".join(links)
    return (
        '<!DOCTYPE html>\n<html>\n<head><meta name="pypi:repository-version" content="1.0">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _unique(entries: Iterable[CacheEntry]) -> list[tuple[str, str, Path]]:
    """(file name, sha256, path) of each distinct wheel; two different wheels of one name
    would make the index publish one of them under the other's hash."""
    found: dict[str, tuple[str, Path]] = {}
    clashes = []
    for entry in entries:
        record = entry.record()
        name, sha256 = str(record["wheel"]), str(record["sha256"])
        if name in found and found[name][0] != sha256:
            clashes.append(name)
        found.setdefault(name, (sha256, entry.path / name))
    if clashes:
        raise AffineurError(
            "two different wheels of the same file name would be published",
            stage="build",
            causes=tuple(sorted(set(clashes))),
            hint="two lock nodes built the same file: give one of them a changelog entry",
        )
    return [(name, sha, path) for name, (sha, path) in sorted(found.items())]


def _statement(source: Path, digest: str, sign_with: Path | None) -> bytes | None:
    """The published form of the statement beside the cached wheel ``source``, if any."""
    path = source.with_name(f"{source.name}{PROVENANCE_SUFFIX}")
    if not path.is_file():
        return None
    statement, _ = read_provenance(path)
    if statement["subject"][0]["digest"]["sha256"] != digest:
        raise AffineurError(
            f"the provenance of {source.name} names other bytes than the cached wheel",
            file=str(path),
            stage="hash",
            hint="the cache entry was changed after the build; delete it and rebuild",
        )
    if sign_with is not None:
        return statement_bytes(sign_statement(statement, sign_with))
    return statement_bytes(statement)


def publish_index(
    entries: Mapping[Any, CacheEntry], dest: Path, *, sign_with: Path | None = None
) -> Path:
    """Write the index for the wheels of ``entries`` (any key -> verified cache entry)
    into ``dest``; return its simple/ folder. ``sign_with`` (an ed25519 private key)
    signs each provenance statement into a DSSE envelope."""
    wheels = _unique(entries.values())
    staging = dest.with_name(f".{dest.name}.{os.getpid()}.new")
    shutil.rmtree(staging, ignore_errors=True)
    files = staging / "files"
    simple = staging / "simple"
    files.mkdir(parents=True)
    simple.mkdir()
    try:
        projects: dict[str, list[str]] = {}
        for filename, sha256, source in wheels:
            target = files / filename
            _copy(source, target)
            target.chmod(PUBLISHED_MODE)
            digest = sha256_file(target)
            if digest != sha256:
                raise AffineurError(
                    f"{filename} in the cache no longer matches its record; not published",
                    stage="hash",
                    file=str(source),
                    hint="run doit again: the damaged entry is discarded and built again",
                )
            statement = _statement(source, digest, sign_with)
            if statement is not None:
                beside = files / f"{filename}{PROVENANCE_SUFFIX}"
                beside.write_bytes(statement)
                beside.chmod(PUBLISHED_MODE)
            meta = read_metadata(target)
            name: str = canonicalize_name(str(meta["Name"]))
            requires_python = meta.get("Requires-Python")
            attr = (
                f' data-requires-python="{html.escape(str(requires_python))}"'
                if requires_python
                else ""
            )
            href = f"../../files/{filename}#sha256={digest}"
            projects.setdefault(name, []).append(
                f'<a href="{html.escape(href)}"{attr}>{html.escape(filename)}</a><br>'
            )
        for name, links in sorted(projects.items()):
            (simple / name).mkdir()
            (simple / name / "index.html").write_text(_page(f"Links for {name}", links))
        root_links = [f'<a href="{n}/">{n}</a><br>' for n in sorted(projects)]
        (simple / "index.html").write_text(_page("Simple index", root_links))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = dest.with_name(f".{dest.name}.{os.getpid()}.old")
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest / "simple"
