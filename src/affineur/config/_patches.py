"""Where a package's patch files are found, and their hashes for the build key.

``overrides/patches/<name>/`` applies to every version, ``<name>-<version>/`` to
one; a ``<variant>/`` subfolder of either applies to that variant only. All
patches that apply are taken together, in file-name order, so a team controls the
order by naming (``0001-…``, ``0002-…``) whatever folder a patch lives in.
"""

from __future__ import annotations

import functools
import hashlib
import stat
from pathlib import Path

from packaging.utils import canonicalize_name

from affineur.errors import AffineurError

__all__ = ["find_patches", "patch_file_problem", "patch_hashes"]


@functools.cache
def _folders(base: Path) -> tuple[tuple[Path, str], ...]:
    """Each patch folder with its name canonicalized.

    Listed once per process: doit loads a task per package, and each one asks.
    """
    if not base.is_dir():
        return ()
    return tuple((f, canonicalize_name(f.name)) for f in sorted(base.iterdir()) if f.is_dir())


@functools.cache
def _find(root: Path, name: str, version: str, variant: str) -> tuple[Path, ...]:
    canonical = canonicalize_name(name)
    folders: list[Path] = []
    for folder, folder_name in _folders(root / "overrides" / "patches"):
        if folder_name == canonical or (
            folder.name.endswith(f"-{version}")
            and canonicalize_name(folder.name[: -len(version) - 1]) == canonical
        ):
            folders.append(folder)
    found: list[Path] = []
    for folder in folders:
        for patch in [*folder.glob("*.patch"), *(folder / variant).glob("*.patch")]:
            problem = patch_file_problem(patch)
            if problem:
                raise AffineurError(
                    f"patch {patch} {problem}",
                    file=str(patch),
                    package=canonical,
                    version=version,
                    stage="patch",
                    hint="patches must be regular files in overrides/patches/",
                )
            found.append(patch)
    return tuple(sorted(found, key=lambda p: (p.name, str(p))))


def patch_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a patch (None when it can).

    Only regular files: skipping a dangling link would build without a patch
    someone meant to apply, and a link or a fifo would make the build read
    something other than the reviewed file (or block on it).
    """
    try:
        mode = path.lstat().st_mode
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if stat.S_ISLNK(mode):
        return "is a symbolic link, not a regular file"
    if stat.S_ISDIR(mode):
        return "is a directory, not a regular file"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return None


def find_patches(root: Path, name: str, version: str, variant: str) -> list[Path]:
    """The patches for one package version and variant, in application order."""
    return list(_find(root, name, version, variant))


def patch_hashes(root: Path, patches: list[Path]) -> list[tuple[str, str]]:
    base = root / "overrides" / "patches"
    return [
        (p.relative_to(base).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in patches
    ]
