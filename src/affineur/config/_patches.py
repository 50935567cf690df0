"""Where a package's patch files are found, and their hashes for the build key.

``overrides/patches/<name>/`` applies to every version, ``<name>-<version>/`` to
one; a ``<variant>/`` subfolder of either applies to that variant only. All
patches that apply are taken together, in file-name order, so a team controls the
order by naming (``0001-…``, ``0002-…``) whatever folder a patch lives in.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from packaging.utils import canonicalize_name

__all__ = ["find_patches", "patch_hashes"]


@functools.cache
def _folders(base: Path) -> tuple[Path, ...]:
    # Listed once per process: doit loads a task per package, and each one asks.
    return tuple(sorted(f for f in base.iterdir() if f.is_dir())) if base.is_dir() else ()


@functools.cache
def _find(root: Path, name: str, version: str, variant: str) -> tuple[Path, ...]:
    canonical = canonicalize_name(name)
    folders: list[Path] = []
    for folder in _folders(root / "overrides" / "patches"):
        if canonicalize_name(folder.name) == canonical or (
            folder.name.endswith(f"-{version}")
            and canonicalize_name(folder.name[: -len(version) - 1]) == canonical
        ):
            folders.append(folder)
    found: list[Path] = []
    for folder in folders:
        found.extend(p for p in folder.glob("*.patch") if p.is_file())
        found.extend(p for p in (folder / variant).glob("*.patch") if p.is_file())
    return tuple(sorted(found, key=lambda p: (p.name, str(p))))


def find_patches(root: Path, name: str, version: str, variant: str) -> list[Path]:
    """The patches for one package version and variant, in application order."""
    return list(_find(root, name, version, variant))


def patch_hashes(root: Path, patches: list[Path]) -> list[tuple[str, str]]:
    base = root / "overrides" / "patches"
    return [
        (p.relative_to(base).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in patches
    ]
