"""Which checkout, which locks, which package: one set of rules for every command.

A user should never have to wonder whether a typo was ignored. Every name given
on the command line (collection, variant, package) is checked against what
exists, and a wrong one fails with a single line that lists the valid choices,
closest first. When exactly one lock fits, ``--collection`` and ``--variant``
can be left out; a command that needs one lock and finds several names the
choices instead of guessing.

The checkout is found like git finds its repository: the nearest folder, from
the current one upward, that holds ``collections/`` next to ``variants/`` or a
``dodo.py``.
"""

from __future__ import annotations

import argparse
import difflib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from affineur.errors import AffineurError
from affineur.graph import Graph

__all__ = [
    "LockId",
    "Names",
    "by_closeness",
    "context",
    "find_root",
    "open_names",
    "package_in",
    "unknown",
]

LockId = tuple[str, str]
"""(collection, variant)"""

_SHOWN_CHOICES = 12
"""A package list can run to hundreds of names; the closest ones are what a typo needs."""


def by_closeness(word: str, choices: Iterable[str]) -> list[str]:
    """``choices`` with the most similar to ``word`` first (ties alphabetical)."""

    def score(choice: str) -> tuple[float, str]:
        ratio = difflib.SequenceMatcher(None, word.lower(), choice.lower()).ratio()
        if choice.lower().startswith(word.lower()) or word.lower().startswith(choice.lower()):
            ratio += 0.5  # a prefix is what a half-typed name usually is
        return (-ratio, choice)

    return sorted(set(choices), key=score)


def unknown(kind: str, name: str, choices: Iterable[str], *, where: str = "") -> AffineurError:
    """``unknown variant 'gpu'; choose from: cpu, cuda`` as one error line."""
    ordered = by_closeness(name, choices)
    if not ordered:
        return AffineurError(f"unknown {kind} {name!r}{where}: there are none yet")
    shown = ", ".join(ordered[:_SHOWN_CHOICES])
    more = f" ({len(ordered) - _SHOWN_CHOICES} more)" if len(ordered) > _SHOWN_CHOICES else ""
    return AffineurError(f"unknown {kind} {name!r}{where}; choose from: {shown}{more}")


def _is_checkout(folder: Path) -> bool:
    return (folder / "collections").is_dir() and (
        (folder / "variants").is_dir() or (folder / "dodo.py").is_file()
    )


def find_root(explicit: str | None, start: Path | None = None) -> Path:
    """``--root`` as given, else the nearest checkout from ``start`` (the cwd) upward."""
    if explicit is not None:
        root = Path(explicit).resolve()
        if not (root / "collections").is_dir():
            raise AffineurError(
                f"{root} is not an affineur checkout (it has no collections/ folder)",
                hint="pass the folder that holds collections/ and variants/, "
                "or make one with 'affineur init'",
            )
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _is_checkout(folder):
            return folder
    raise AffineurError(
        f"no affineur checkout in {here} or any folder above it",
        hint="run affineur inside a checkout (a folder with collections/ and variants/), "
        "pass --root, or start one with 'affineur init'",
    )


def open_names(explicit: str | None) -> tuple[Path, Names]:
    """The checkout's root (``--root`` or found upward) and the names it offers."""
    root = find_root(explicit)
    return root, Names.at(root)


def context(args: argparse.Namespace) -> tuple[Path, Names]:
    """The checkout's root and the names it offers, for the command being run."""
    return open_names(getattr(args, "root", None))


def _collection_variants(path: Path) -> tuple[str, ...]:
    """A collection's variants, read leniently: a broken file is reported by 'check'."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return ()
    variants = data.get("variants")
    if not isinstance(variants, list):
        return ()
    return tuple(v for v in variants if isinstance(v, str))


@dataclass(frozen=True)
class Names:
    """The names a command may be given, read from the checkout's files without loading it.

    Reading only names keeps selection working when some config file is broken
    (``check`` and ``diff`` must still run then) and costs next to nothing.
    """

    root: Path
    collections: Mapping[str, tuple[str, ...]]
    """Each collection's declared variants."""
    variants: tuple[str, ...]
    locks: frozenset[LockId]

    @classmethod
    def at(cls, root: Path) -> Names:
        collections = {
            p.stem: _collection_variants(p) for p in sorted((root / "collections").glob("*.toml"))
        }
        variants = tuple(sorted(p.stem for p in (root / "variants").glob("*.yaml")))
        locks = frozenset(
            (p.parent.parent.name, p.parent.name) for p in root.glob("lock/*/*/graph.json")
        )
        return cls(root, collections, variants, locks)

    def _known_collections(self) -> set[str]:
        return set(self.collections) | {c for c, _ in self.locks}

    def _known_variants(self) -> set[str]:
        return set(self.variants) | {v for _, v in self.locks}

    def check_collection(self, name: str | None) -> None:
        if name is not None and name not in self._known_collections():
            raise unknown("collection", name, self._known_collections())

    def check_variant(self, name: str | None) -> None:
        if name is not None and name not in self._known_variants():
            raise unknown("variant", name, self._known_variants())

    def pairs(self) -> list[LockId]:
        """Every (collection, variant) the config declares or a lock file holds."""
        declared = {(c, v) for c, vs in self.collections.items() for v in vs}
        return sorted(declared | self.locks)

    def select(
        self,
        collection: str | None = None,
        variant: str | None = None,
        *,
        locked: bool = True,
    ) -> list[LockId]:
        """The pairs matching the flags; unknown names and empty results are errors.

        ``locked``: only pairs that have a lock file (commands that read locks).
        """
        self.check_collection(collection)
        self.check_variant(variant)
        chosen = [
            (c, v)
            for c, v in self.pairs()
            if (collection is None or c == collection) and (variant is None or v == variant)
        ]
        if collection is not None and variant is not None and not chosen:
            builds = self.collections.get(collection, ())
            raise AffineurError(
                f"collection {collection!r} is not built for variant {variant!r}; "
                f"its variants: {', '.join(builds) or 'none'}"
            )
        if locked:
            have = [p for p in chosen if p in self.locks]
            if not have:
                wanted = ", ".join(f"{c}/{v}" for c, v in chosen) or "anything"
                raise AffineurError(
                    f"no lock of {wanted} yet",
                    hint="'affineur lock' (or 'doit lock') makes it",
                    stage="lock",
                )
            chosen = have
        return chosen

    def select_one(
        self, collection: str | None = None, variant: str | None = None, *, locked: bool = True
    ) -> LockId:
        """Exactly one pair; several is an error naming the flag that would decide."""
        chosen = self.select(collection, variant, locked=locked)
        if len(chosen) == 1:
            return chosen[0]
        collections = sorted({c for c, _ in chosen})
        variants = sorted({v for _, v in chosen})
        if len(collections) > 1 and len(variants) > 1:
            flags = "--collection and --variant"
        elif len(collections) > 1:
            flags = "--collection"
        else:
            flags = "--variant"
        listing = ", ".join(f"{c}/{v}" for c, v in chosen)
        raise AffineurError(f"several locks match ({listing}); choose one with {flags}")

    def graph(self, lock: LockId) -> Graph:
        from affineur.lock import LockPaths, read_lock

        path = LockPaths.of(self.root, *lock).graph
        graph = read_lock(path)
        if graph is None:
            raise AffineurError("the lock is gone", file=str(path), stage="lock")
        return graph

    def graphs(self, locks: Iterable[LockId]) -> dict[LockId, Graph]:
        return {lock: self.graph(lock) for lock in locks}


def package_in(name: str, graphs: Mapping[LockId, Graph]) -> str:
    """``name`` canonicalized, if some selected lock holds it; else the error with choices."""
    canonical = canonicalize_name(name)
    names = {n.name for g in graphs.values() for n in g.nodes.values()}
    if canonical not in names:
        where = ", ".join(f"{c}/{v}" for c, v in sorted(graphs))
        raise unknown("package", name, names, where=f" in the lock of {where}")
    return canonical
