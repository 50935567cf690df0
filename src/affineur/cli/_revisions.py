"""The locks of a git revision or of another folder, for comparing with the work tree.

``affineur diff`` compares two sets of locks that need not be checked out: a
revision's are read with ``git show``, so the work tree is never touched.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from affineur.cli._select import LockId
from affineur.errors import AffineurError
from affineur.graph import Graph

__all__ = ["locks_at"]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    except FileNotFoundError:
        raise AffineurError("git is not installed", hint="compare two folders instead") from None


def _git_locks(root: Path, rev: str) -> dict[LockId, Graph]:
    """Every lock/*/*/graph.json tracked at ``rev``, read without touching the work tree."""
    from affineur.lock import LockPaths, parse_lock

    if _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode != 0:
        raise AffineurError(
            f"{rev!r} is neither a folder holding lock/ nor a git revision of {root}",
            hint="pass a commit, branch or tag, or a names folder",
        )
    # Paths print relative to cwd (the project root may be a subfolder of the repository).
    listing = _git(root, "ls-tree", "-r", "--name-only", rev, "--", "lock/")
    locks = {}
    for name in sorted(listing.stdout.decode().splitlines()):
        lock_id = LockPaths.lock_id(name)
        if lock_id is None:
            continue
        shown = _git(root, "show", f"{rev}:./{name}")
        if shown.returncode != 0:
            raise AffineurError(
                f"git show {rev}:{name} failed", causes=(shown.stderr.decode().strip(),)
            )
        locks[lock_id] = parse_lock(shown.stdout, f"{rev}:{name}")
    return locks


def locks_at(root: Path, spec: str | None) -> dict[LockId, Graph]:
    """None: the work tree; a folder with lock/ or collections/: that folder; else a revision."""
    from affineur.lock import read_locks

    if spec is None:
        return read_locks(root)
    folder = Path(spec)
    if folder.is_dir() and ((folder / "lock").is_dir() or (folder / "collections").is_dir()):
        return read_locks(folder.resolve())
    return _git_locks(root, spec)
