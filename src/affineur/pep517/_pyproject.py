"""Build-requirement overrides: applied to requirement lists and to pyproject.toml.

Discovery applies an override to the requirement list it resolves, so the lock
reflects it; the builder also writes it into the unpacked source's
pyproject.toml, so the backend sees the same ``[build-system]`` the lock was made
from. The file is edited with tomlkit: comments, order and formatting of
everything else survive, which keeps a patched source reviewable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import tomlkit
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tomlkit.exceptions import TOMLKitError

from affineur.config import BuildRequiresOverride
from affineur.errors import AffineurError
from affineur.pep517._hooks import BuildSystem, read_build_system

__all__ = ["effective_build_system", "is_empty", "override_requires", "write_build_system"]


def override_requires(requires: Sequence[str], override: BuildRequiresOverride) -> tuple[str, ...]:
    """``requires`` with ``remove``, then ``replace`` (by project name), then ``add`` applied."""
    remove = {canonicalize_name(n) for n in override.remove}
    replace = {canonicalize_name(k): v for k, v in override.replace.items()}
    out: list[str] = []
    for text in requires:
        name = canonicalize_name(Requirement(text).name)
        if name in remove:
            continue
        out.append(replace.get(name, text))
    out.extend(override.add)
    return tuple(dict.fromkeys(out))


def effective_build_system(source_dir: Path, override: BuildRequiresOverride) -> BuildSystem:
    """The source's ``[build-system]`` with the override applied to its requires."""
    declared = read_build_system(source_dir)
    return BuildSystem(
        requires=override_requires(declared.requires, override),
        build_backend=declared.build_backend,
        backend_path=declared.backend_path,
    )


def is_empty(override: BuildRequiresOverride) -> bool:
    return not (override.add or override.remove or override.replace)


def write_build_system(source_dir: Path, build_system: BuildSystem) -> None:
    """Make ``[build-system] requires`` in ``source_dir/pyproject.toml`` say what was locked.

    A source without pyproject.toml gets one declaring the legacy setuptools
    backend explicitly, which is what a missing file means (PEP 517).
    """
    path = source_dir / "pyproject.toml"
    try:
        document = tomlkit.parse(path.read_text()) if path.exists() else tomlkit.document()
    except TOMLKitError as exc:
        raise AffineurError(f"cannot edit {path}: {exc}", stage="patch") from None
    table = document.get("build-system")
    if table is None:
        table = tomlkit.table()
        document["build-system"] = table
    requires = tomlkit.array()
    requires.extend(build_system.requires)
    table["requires"] = requires.multiline(len(build_system.requires) > 1)
    if "build-backend" not in table:
        # Without it the backend is the legacy one; saying so changes nothing.
        table["build-backend"] = build_system.build_backend
    path.write_text(tomlkit.dumps(document))
