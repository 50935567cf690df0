"""Where a package's patch files are found, and their hashes for the build key.

``overrides/patches/<name>/`` applies to every version, ``<name>-<version>/`` to
one; a ``<variant>/`` subfolder of either applies to that variant only. All
patches that apply are taken together, in file-name order, so a team controls the
order by naming (``0001-…``, ``0002-…``) whatever folder a patch lives in.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from packaging.utils import canonicalize_name

__all__ = ["find_patches", "patch_hashes"]


def find_patches(root: Path, name: str, version: str, variant: str) -> list[Path]:
    base = root / "overrides" / "patches"
    if not base.is_dir():
        return []
    canonical = canonicalize_name(name)
    folders: list[Path] = []
    for folder in base.iterdir():
        if not folder.is_dir():
            continue
        if canonicalize_name(folder.name) == canonical or (
            folder.name.endswith(f"-{version}")
            and canonicalize_name(folder.name[: -len(version) - 1]) == canonical
        ):
            folders.append(folder)
    found: list[Path] = []
    for folder in folders:
        found.extend(p for p in folder.glob("*.patch") if p.is_file())
        found.extend(p for p in (folder / variant).glob("*.patch") if p.is_file())
    return sorted(found, key=lambda p: (p.name, str(p)))


def patch_hashes(root: Path, patches: list[Path]) -> list[tuple[str, str]]:
    base = root / "overrides" / "patches"
    return [
        (p.relative_to(base).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in patches
    ]
