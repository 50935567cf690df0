"""Publish a lock's wheels from the cache as a PEP 503 index.

``dist/<collection>/<variant>/`` holds ``files/`` (the wheels, hard-linked from
the cache where the file system allows) and ``simple/`` (the pages), so
``pip install --index-url file://…/simple NAME`` works offline. The directory is
built beside the old one and swapped in, so a reader never sees half an index.
"""

from __future__ import annotations

import hashlib
import html
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from affineur.index import read_metadata

__all__ = ["publish_index"]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _page(title: str, links: list[str]) -> str:
    body = "\n".join(links)
    return (
        '<!DOCTYPE html>\n<html>\n<head><meta name="pypi:repository-version" content="1.0">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def publish_index(wheels: Mapping[Any, Path], dest: Path) -> Path:
    """Write the index for ``wheels`` (any key -> wheel path) into ``dest``; return simple/."""
    staging = dest.with_name(f".{dest.name}.{os.getpid()}.new")
    shutil.rmtree(staging, ignore_errors=True)
    files = staging / "files"
    simple = staging / "simple"
    files.mkdir(parents=True)
    simple.mkdir()
    projects: dict[str, list[str]] = {}
    for wheel in sorted(set(wheels.values()), key=lambda p: p.name):
        target = files / wheel.name
        if target.exists():
            continue
        _link_or_copy(wheel, target)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        meta = read_metadata(target)
        name: str = canonicalize_name(str(meta["Name"]))
        requires_python = meta.get("Requires-Python")
        attr = (
            f' data-requires-python="{html.escape(str(requires_python))}"'
            if requires_python
            else ""
        )
        href = f"../../files/{wheel.name}#sha256={digest}"
        projects.setdefault(name, []).append(
            f'<a href="{html.escape(href)}"{attr}>{html.escape(wheel.name)}</a><br>'
        )
    for name, links in sorted(projects.items()):
        (simple / name).mkdir()
        (simple / name / "index.html").write_text(_page(f"Links for {name}", links))
    root_links = [f'<a href="{n}/">{n}</a><br>' for n in sorted(projects)]
    (simple / "index.html").write_text(_page("Simple index", root_links))
    old = dest.with_name(f".{dest.name}.{os.getpid()}.old")
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest / "simple"
