"""Loading the project's declarative files into typed, immutable models.

A project directory holds ``collections/*.toml`` (what to build),
``variants/*.yaml`` (how to build for a target) and ``overrides/*.yaml`` (per
package adjustments; ``overrides/patches/`` holds patch files). :func:`load_project`
reads and checks all of them and raises a single :class:`AffineurError` that lists
every problem in every file: a user fixing a pull request should not have to
rerun once per typo.

Checks happen in three passes: syntax (file and line from the parser, see
:mod:`affineur.config._documents`), the JSON Schema of each file, then what a
schema cannot say (:mod:`affineur.config._checks`; ``extends`` loops in
:mod:`affineur.config._variants`). The third pass only looks at files that passed
the second, so it may trust types.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from packaging.utils import canonicalize_name

from affineur.config._checks import (
    PROJECT_NAME,
    check_collection,
    check_override,
    check_variant,
    duplicate_overrides,
    patch_tree_problems,
)
from affineur.config._documents import Document, read_all
from affineur.config._models import Collection, PackageOverride, Project, freeze
from affineur.config._schema import raise_problems
from affineur.config._variants import extends_loops, variant_of
from affineur.errors import AffineurError

__all__ = ["load_project"]

COLLECTIONS = "collections"
VARIANTS = "variants"
OVERRIDES = "overrides"
PATCHES = "patches"


def load_project(root: Path, *, memo: Path | None = None) -> Project:
    """Read and check every config file under ``root``; raise once with all problems.

    ``memo`` (a folder) remembers files that passed their schema, so an unchanged
    config is not checked again (see :func:`schema_problems`).
    """
    if not (root / COLLECTIONS).is_dir():
        raise AffineurError(
            f"not an affineur project: {root / COLLECTIONS} is not a directory",
            hint="run affineur from the repository root, or create collections/<name>.toml",
            stage="config",
        )
    problems: list[AffineurError] = []
    collections = read_all(root / COLLECTIONS, ".toml", "collection", problems, memo)
    variants = read_all(root / VARIANTS, ".yaml", "variant", problems, memo)
    overrides = read_all(root / OVERRIDES, ".yaml", "overrides", problems, memo)

    for doc in collections.values():
        if doc.valid:
            problems += check_collection(doc, variants)
    for doc in variants.values():
        if doc.valid:
            problems += check_variant(doc, variants)
    problems += extends_loops(variants)
    problems += patch_tree_problems(root / OVERRIDES / PATCHES)
    problems += duplicate_overrides(overrides.values())
    for doc in overrides.values():
        if not PROJECT_NAME.match(doc.name):
            problems.append(doc.problem(f"{doc.name!r} is not a valid package name", ()))
        if doc.valid:
            problems += check_override(doc, variants)
    problems.sort(key=lambda p: (p.file or "", p.line or 0))
    raise_problems(problems)

    return Project(
        root=root,
        collections=MappingProxyType(
            {name: _collection(doc) for name, doc in sorted(collections.items())}
        ),
        variants=MappingProxyType({name: variant_of(name, variants) for name in sorted(variants)}),
        overrides=MappingProxyType(
            {
                canonicalize_name(doc.name): PackageOverride(
                    canonicalize_name(doc.name), freeze(doc.data), doc.path
                )
                for doc in sorted(overrides.values(), key=lambda d: d.name)
            }
        ),
    )


def _collection(doc: Document) -> Collection:
    data = doc.data
    return Collection(
        name=doc.name,
        description=data.get("description", ""),
        requirements=tuple(data["requirements"]),
        constraints=tuple(data.get("constraints", ())),
        variants=tuple(data["variants"]),
        prereleases=bool(data.get("options", {}).get("prereleases", False)),
        file=doc.path,
    )
