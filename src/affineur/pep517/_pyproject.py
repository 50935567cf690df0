"""A source tree's ``[build-system]``: reading it, overriding it, writing it back.

Everything affineur knows about the table lives here: the PEP 517/518 defaults
and checks when reading it, and build-requirement overrides. Discovery applies
an override to the requirement list it resolves, so the lock reflects it; the
builder also writes it into the unpacked source's pyproject.toml, so the backend
sees the same ``[build-system]`` the lock was made from. The file is edited with
tomlkit: comments, order and formatting of everything else survive, which keeps
a patched source reviewable.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tomlkit
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from tomlkit.exceptions import TOMLKitError

from affineur.config import BuildRequiresOverride
from affineur.errors import AffineurError
from affineur.limits import TOO_DEEP, too_deep

__all__ = [
    "LEGACY_BUILD_SYSTEM",
    "BuildSystem",
    "effective_build_system",
    "is_empty",
    "override_requires",
    "read_build_system",
    "write_build_system",
]


@dataclass(frozen=True)
class BuildSystem:
    """The ``[build-system]`` table of a source tree."""

    requires: tuple[str, ...]
    build_backend: str
    backend_path: tuple[str, ...] = ()


# PEP 517/518: a tree without the table (or without ``build-backend``) is built
# the way setuptools always built it.
LEGACY_BUILD_SYSTEM = BuildSystem(
    requires=("setuptools>=40.8.0",), build_backend="setuptools.build_meta:__legacy__"
)


def _strings(value: object, file: Path, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AffineurError(
            f"'{key}' must be a list of strings",
            file=str(file),
            key_path=("build-system", key),
            stage="build-env",
        )
    return tuple(value)


def read_build_system(source_dir: Path) -> BuildSystem:
    """The build system ``source_dir`` declares, with the PEP 517/518 defaults."""
    pyproject = source_dir / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        if too_deep(data):
            raise RecursionError
    except FileNotFoundError:
        return LEGACY_BUILD_SYSTEM
    except RecursionError:
        raise AffineurError(TOO_DEEP, file=str(pyproject), stage="build-env") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AffineurError(f"invalid TOML: {exc}", file=str(pyproject), stage="build-env") from exc
    table = data.get("build-system")
    if table is None:
        return LEGACY_BUILD_SYSTEM
    if not isinstance(table, dict):
        raise AffineurError(
            "'build-system' must be a table",
            file=str(pyproject),
            key_path=("build-system",),
            stage="build-env",
        )
    if "requires" not in table:
        # PEP 518: a table without its one required key is an error, not a default.
        raise AffineurError(
            "the [build-system] table has no 'requires' key",
            file=str(pyproject),
            key_path=("build-system", "requires"),
            stage="build-env",
        )
    requires = _strings(table["requires"], pyproject, "requires")
    for req in requires:
        try:
            Requirement(req)
        except InvalidRequirement as exc:
            raise AffineurError(
                f"invalid requirement {req!r}: {exc}",
                file=str(pyproject),
                key_path=("build-system", "requires"),
                stage="build-env",
            ) from exc
    backend = table.get("build-backend")
    if backend is None:
        return BuildSystem(requires=requires, build_backend=LEGACY_BUILD_SYSTEM.build_backend)
    if not isinstance(backend, str) or not backend.strip():
        raise AffineurError(
            "'build-backend' must be a non-empty string",
            file=str(pyproject),
            key_path=("build-system", "build-backend"),
            stage="build-env",
        )
    backend_path = _strings(table.get("backend-path", []), pyproject, "backend-path")
    root = source_dir.resolve()
    for entry in backend_path:
        # PEP 517 asks frontends to refuse in-tree backends that live outside the tree.
        if not (root / entry).resolve().is_relative_to(root):
            raise AffineurError(
                f"backend-path entry {entry!r} points outside the source tree",
                file=str(pyproject),
                key_path=("build-system", "backend-path"),
                stage="build-env",
            )
    return BuildSystem(requires=requires, build_backend=backend, backend_path=backend_path)


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
    except RecursionError:
        raise AffineurError(f"cannot edit {path}: {TOO_DEEP}", stage="patch") from None
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
