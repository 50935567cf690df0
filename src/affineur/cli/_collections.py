"""Editing a collection's requirements: ``affineur add`` and ``affineur remove``.

Both edit ``collections/<name>.toml`` in place with comments and layout kept, and
hold the checkout mutex while they write, as ``doit`` does while it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from packaging.utils import canonicalize_name

from affineur.cli._options import AddCommand
from affineur.cli._select import Names, context, unknown
from affineur.errors import AffineurError

__all__ = ["register"]


def _collection_name(names: Names, given: str | None) -> str:
    if given is not None:
        names.check_collection(given)
        if given not in names.collections:
            raise AffineurError(f"collection {given!r} has a lock but no collections/ file")
        return given
    if len(names.collections) == 1:
        return next(iter(names.collections))
    if not names.collections:
        raise AffineurError(
            "the repository has no collection", hint="create collections/<name>.toml"
        )
    raise AffineurError(
        f"several collections ({', '.join(names.collections)}); choose one with --collection"
    )


def cmd_add(args: argparse.Namespace) -> int:
    from affineur.config import add_requirement
    from affineur.run import hold_checkout

    root, names = context(args)
    collection = _collection_name(names, args.collection)
    key: Literal["requirements", "constraints"] = (
        "constraints" if args.constraint else "requirements"
    )
    with hold_checkout(root):
        edit = add_requirement(root, collection, args.requirement, key=key)
    print(edit.describe())
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from affineur.config import remove_requirement
    from affineur.run import hold_checkout

    root, names = context(args)
    if args.collection is not None:
        names.check_collection(args.collection)
    key: Literal["requirements", "constraints"] = (
        "constraints" if args.constraint else "requirements"
    )
    present = _named_in(root, key, args.collection)
    if canonicalize_name(args.name) not in present:
        kind = "constraint" if args.constraint else "requirement"
        where = f" of collection {args.collection!r}" if args.collection else ""
        raise unknown(kind, args.name, present, where=where)
    with hold_checkout(root):
        edits = remove_requirement(root, args.name, args.collection, key=key)
    for edit in edits:
        print(edit.describe())
    return 0


def _named_in(root: Path, key: str, collection: str | None) -> set[str]:
    """The names a collection's requirements (or constraints) are on, for choices."""
    import tomllib

    from packaging.requirements import InvalidRequirement, Requirement

    names: set[str] = set()
    for path in sorted((root / "collections").glob("*.toml")):
        if collection is not None and path.stem != collection:
            continue
        try:
            items = tomllib.loads(path.read_text(encoding="utf-8")).get(key, [])
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
            continue
        for text in items if isinstance(items, list) else []:
            try:
                names.add(canonicalize_name(Requirement(str(text)).name))
            except InvalidRequirement:
                continue
    return names


def register(add: AddCommand) -> None:
    """Add ``add`` and ``remove`` to the ``affineur`` parser."""
    raw = argparse.RawDescriptionHelpFormatter

    p = add(
        "add",
        "add (or replace) a requirement or constraint of a collection",
        description=(
            "Add a PEP 508 requirement to collections/<name>.toml, replacing one on the\n"
            "same name; comments and layout are kept. --constraint adds it to the\n"
            "collection's constraints instead (a limit, not something to install).\n"
            "Then 'affineur lock' (or 'doit') re-locks."
        ),
        formatter_class=raw,
    )
    p.add_argument("requirement", help="a PEP 508 requirement, such as 'requests>=2.31'")
    p.add_argument("--collection", metavar="NAME", help="needed only when there are several")
    p.add_argument(
        "--constraint", action="store_true", help="a constraint (limits versions, installs nothing)"
    )
    p.set_defaults(func=cmd_add)

    p = add("remove", "remove a requirement (or constraint) from collections")
    p.add_argument("name")
    p.add_argument("--collection", metavar="NAME", help="only this one (default: every one)")
    p.add_argument("--constraint", action="store_true", help="remove a constraint instead")
    p.set_defaults(func=cmd_remove)
