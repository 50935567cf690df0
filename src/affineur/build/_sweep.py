"""Removing what killed runs left behind.

A run killed by SIGKILL cannot clean up: its work folders, its cache staging,
its half-published index stay on disk. Each of them is named with the pid of
the process that made it, so the next run can tell the leftovers of a dead
process from the folders of one still running (another ``affineur`` command,
or a concurrent lock) and remove only the former.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

__all__ = ["pid_alive", "sweep_dead_folders", "sweep_stale_publishes"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> bool:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return True
    return False


def sweep_dead_folders(folder: Path) -> list[Path]:
    """Remove the entries of ``folder`` named ``<pid>.<anything>`` whose pid is gone,
    and those with no pid at all (made before names carried one)."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        pid, _, _rest = entry.name.partition(".")
        if pid.isdigit() and (int(pid) == os.getpid() or pid_alive(int(pid))):
            continue
        if _remove(entry):
            removed.append(entry)
    return removed


def sweep_stale_publishes(dist: Path) -> list[Path]:
    """Remove the ``.<variant>.<pid>.new`` and ``.old`` folders of publishes that died."""
    removed: list[Path] = []
    if not dist.is_dir():
        return removed
    for folder in dist.glob("*/.*.*.*"):
        parts = folder.name.rsplit(".", 2)
        if len(parts) != 3 or parts[2] not in ("new", "old") or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid != os.getpid() and not pid_alive(pid) and _remove(folder):
            removed.append(folder)
    return removed
