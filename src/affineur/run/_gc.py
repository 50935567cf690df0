"""``affineur gc``: what under ``build/`` no lock references any more, and removing it.

``build/`` only grows: every build key ever built keeps its cache entry, every
sdist ever locked stays in the store, and a killed run leaves its work folder.
That is what makes switching branches cheap, and what fills a disk. A lock
references a build by its key (computed from the lock and the current
settings, so an entry for settings no lock uses any more is unreferenced), a
download by its file name, a failed build's log by its name and version.
Anything under ``build/`` that no current lock references is garbage; so are
the leftovers of operations that died half-way (staging and work folders).

What the lock stage keeps to re-lock quickly (discovery environments, hook
answers, upstream wheels) is not counted: it is a cache of stage 1, not of
builds, and it is keyed by what resolution needs rather than by a lock.

Listing is read-only; :func:`remove` deletes, each folder renamed away first so
that nothing is ever left half-deleted under a name a run would trust.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from affineur.run._checkout import Checkout

__all__ = ["Garbage", "find_garbage", "human_size", "remove_garbage"]

# Transient folders of the build cache: a build being staged, an entry being
# replaced by a forced rebuild, cleaned or withdrawn.
_TRANSIENT = (".staging-", ".previous-", ".cleaned-", ".withdrawn-")


@dataclass(frozen=True)
class Garbage:
    path: Path
    size: int
    """Bytes on disk it frees (files counted once, links not followed)."""
    why: str


def _size(path: Path) -> int:
    try:
        if path.is_symlink() or not path.is_dir():
            return path.lstat().st_size
    except OSError:
        return 0
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(folder) / name).lstat().st_size
            except OSError:
                continue
    return total


def _children(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from sorted(folder.iterdir())


def _alive(staging: Path) -> bool:
    """Whether the process that staged this folder still runs."""
    try:
        pid = int((staging / ".pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def find_garbage(checkout: Checkout) -> list[Garbage]:
    """Everything under ``build/`` that no lock of the checkout references."""
    keys: set[str] = set()
    files: set[str] = set()
    builds: set[tuple[str, str]] = set()  # (variant, "name-version")
    for lv in checkout.locked:
        keys.update(lv.keys.values())
        for node in lv.graph.nodes.values():
            builds.add((lv.variant.name, f"{node.name}-{node.version}"))
            for ref in (node.sdist, node.wheel):
                if ref is not None:
                    files.add(ref.filename)
    build = checkout.build_dir
    found: list[Garbage] = []

    def add(path: Path, why: str) -> None:
        found.append(Garbage(path, _size(path), why))

    for path in _children(checkout.cache.root):
        if path.name.startswith(_TRANSIENT):
            if not (path.name.startswith(".staging-") and _alive(path)):
                add(path, "left behind by a run that stopped half-way")
        elif path.name not in keys:
            add(path, f"{_entry_name(path)}: a build no lock references")
    for path in _children(checkout.store.root):
        if path.name not in files:
            add(path, "a download no lock references")
    for path in _children(build / "work"):
        add(path, "the work folder of a build that stopped half-way")
    for path in _children(build / "substitutes"):
        if not any(path.name.startswith(_dist(b) + "-") for _v, b in builds):
            add(path, "an upstream stand-in no lock references")
    for variant in _children(build / "logs"):
        if variant.name == "lock":
            continue  # the lock stage's own logs
        for path in _children(variant):
            if (variant.name, path.name.removesuffix(".log")) not in builds:
                add(path, "the log of a failed build no lock references")
    for path in _children(build / "rebuild"):
        if path.name not in keys:
            add(path, "a rebuild request for a build no lock references")
    return found


def _dist(name_version: str) -> str:
    """``flit-core-3.9`` -> ``flit_core-3.9``: how wheel file names start."""
    name, _, version = name_version.rpartition("-")
    return f"{name.replace('-', '_')}-{version}"


def _entry_name(entry: Path) -> str:
    """``name version`` from the entry's record, else the key's start."""
    try:
        record = json.loads((entry / "record.json").read_text())
        return f"{record['name']} {record['version']}"
    except (OSError, ValueError, KeyError, TypeError):
        return entry.name[:12]


def remove_garbage(items: Iterable[Garbage]) -> int:
    """Delete ``items``; the bytes freed."""
    freed = 0
    for item in items:
        path = item.path
        try:
            if path.is_dir() and not path.is_symlink():
                aside = Path(tempfile.mkdtemp(prefix=".removing-", dir=path.parent))
                path.rename(aside / "gone")
                shutil.rmtree(aside, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            continue
        freed += item.size
    return freed


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
