"""``affineur add`` / ``affineur remove``: edit a collection's requirements in place.

Collection files are reviewed in pull requests, so an edit must look like a
person made it: tomlkit keeps comments, order and layout, and only the one
array item changes. The project is loaded with the edited file BEFORE anything
is written, so a change that would break the config leaves the file untouched;
the write itself is an atomic rename.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import tomlkit
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from tomlkit.items import Array

from affineur.atomic import write_atomic
from affineur.config._project import load_project
from affineur.errors import AffineurError

__all__ = [
    "Edit",
    "add_requirement",
    "remove_requirement",
    "with_requirement",
    "without_requirement",
    "write_validated",
]


Key = Literal["requirements", "constraints"]
"""The collection array an edit touches."""


@dataclass(frozen=True)
class Edit:
    """One collection's change: what was added, replaced or removed."""

    collection: str
    added: str | None = None
    replaced: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    key: Key = "requirements"

    def describe(self) -> str:
        where = self.collection if self.key == "requirements" else f"{self.collection} constraints"
        if self.added and self.replaced:
            return f"{where}: {', '.join(self.replaced)} -> {self.added}"
        if self.added:
            return f"{where}: + {self.added}"
        return f"{where}: - {', '.join(self.removed)}"


def _name_of(text: str) -> str | None:
    try:
        return canonicalize_name(Requirement(text).name)
    except InvalidRequirement:
        return None  # config validation reports it; it just cannot match a name


def _requirements(
    doc: tomlkit.TOMLDocument, file: str, key: Key = "requirements", *, create: bool = False
) -> Array:
    array = doc.get(key)
    if array is None and create and key == "constraints":
        # Constraints are optional: the first one starts the array, placed
        # before any table so it stays a top-level key.
        doc[key] = tomlkit.array()
        array = doc[key]
    if not isinstance(array, Array):
        raise AffineurError(f"has no {key!r} array to edit", file=file, key_path=(key,))
    return array


def with_requirement(
    text: str, requirement: str, *, file: str = "", key: Key = "requirements"
) -> tuple[str, tuple[str, ...]]:
    """The collection text with ``requirement`` in place of any of the same name.

    The first match is replaced where it stands (keeping its comment) and
    further ones are dropped; with none, it is appended. Returns the new text
    and the requirements it replaced.
    """
    name = _name_of(requirement)
    if name is None:
        raise AffineurError(f"{requirement!r} is not a valid requirement", stage="config")
    doc = tomlkit.parse(text)
    array = _requirements(doc, file, key, create=True)
    matches = [i for i, item in enumerate(array) if _name_of(str(item)) == name]
    replaced = tuple(str(array[i]) for i in matches)
    if matches:
        array[matches[0]] = requirement
        for i in reversed(matches[1:]):
            del array[i]
    else:
        array.append(requirement)
    return tomlkit.dumps(doc), replaced


def without_requirement(
    text: str, name: str, *, file: str = "", key: Key = "requirements"
) -> tuple[str, tuple[str, ...]]:
    """The collection text without any requirement on ``name``; returns what was removed."""
    wanted = canonicalize_name(name)
    doc = tomlkit.parse(text)
    if key == "constraints" and "constraints" not in doc:
        return text, ()
    array = _requirements(doc, file, key)
    matches = [i for i, item in enumerate(array) if _name_of(str(item)) == wanted]
    removed = tuple(str(array[i]) for i in matches)
    for i in reversed(matches):
        del array[i]
    return tomlkit.dumps(doc), removed


def _collection_file(root: Path, collection: str) -> Path:
    path = root / "collections" / f"{collection}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in (root / "collections").glob("*.toml"))
        raise AffineurError(
            f"no collection {collection!r}",
            hint=f"collections: {', '.join(known)}" if known else "create collections/<name>.toml",
            file=str(path),
            stage="config",
        )
    return path


def _relocated(exc: AffineurError, scratch: Path, root: Path) -> AffineurError:
    """The error with the scratch copy's paths turned back into the user's."""

    def fix(text: str) -> str:
        return text.replace(str(scratch), str(root))

    return replace(
        exc,
        message=fix(exc.message),
        file=fix(exc.file) if exc.file else None,
        causes=tuple(fix(c) for c in exc.causes),
    )


def write_validated(root: Path, changes: Mapping[Path, str]) -> None:
    """Write config files only if the project still loads with them.

    The project is checked in a scratch copy of its config folders with the
    changes applied (overrides/ is linked, not copied: it may hold large
    patches), so the user's files never hold an invalid state.
    """
    with tempfile.TemporaryDirectory(prefix="affineur-edit-") as tmp:
        scratch = Path(tmp)
        for folder in ("collections", "variants"):
            if (root / folder).is_dir():
                shutil.copytree(root / folder, scratch / folder)
        if (root / "overrides").is_dir():
            (scratch / "overrides").symlink_to(root / "overrides", target_is_directory=True)
        for path, text in changes.items():
            target = scratch / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        try:
            load_project(scratch)
        except AffineurError as exc:
            raise _relocated(exc, scratch, root) from None
    for path, text in changes.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)


def add_requirement(
    root: Path, collection: str, requirement: str, *, key: Key = "requirements"
) -> Edit:
    path = _collection_file(root, collection)
    text, replaced = with_requirement(
        path.read_text(encoding="utf-8"), requirement, file=str(path), key=key
    )
    write_validated(root, {path: text})
    return Edit(collection, added=requirement, replaced=replaced, key=key)


def remove_requirement(
    root: Path, name: str, collection: str | None = None, *, key: Key = "requirements"
) -> list[Edit]:
    """Remove ``name`` from one collection, or from every collection that has it."""
    if collection is not None:
        paths = [_collection_file(root, collection)]
    else:
        paths = sorted((root / "collections").glob("*.toml"))
    changes: dict[Path, str] = {}
    edits: list[Edit] = []
    for path in paths:
        text, removed = without_requirement(
            path.read_text(encoding="utf-8"), name, file=str(path), key=key
        )
        if removed:
            changes[path] = text
            edits.append(Edit(path.stem, removed=removed, key=key))
    if not edits:
        where = f"collection {collection!r}" if collection else "any collection"
        kind = "constraint" if key == "constraints" else "requirement"
        raise AffineurError(
            f"{canonicalize_name(name)} is not a {kind} of {where}",
            file=str(paths[0]) if collection else None,
            package=None,
            stage="config",
        )
    write_validated(root, changes)
    return edits
