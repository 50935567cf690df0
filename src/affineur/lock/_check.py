"""``affineur check``: may this pull request be merged? Offline, for CI.

It answers without the network (CI for pull requests often has none, and a
check must not depend on the index being up): every config file and every
lock is validated, and every lock must be fresh, that is made from exactly the
config in the checkout. A PR that edits a collection without committing the
re-lock fails here, with the command that fixes it.

All problems are collected before reporting, so one CI run shows them all.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from affineur.config import Project, load_project
from affineur.errors import AffineurError
from affineur.graph import Graph, build_order, install_closure
from affineur.lock._files import LockPaths, find_locks, lock_is_fresh, read_lock

__all__ = ["CheckReport", "LockState", "LockStatus", "check_project"]

LockState = Literal["ok", "stale", "missing", "invalid", "orphan", "unchecked"]

RELOCK = "run 'doit lock' (or 'affineur lock') and commit lock/"


@dataclass(frozen=True)
class LockStatus:
    collection: str
    variant: str
    state: LockState
    detail: str
    attested: tuple[str, ...] = ()
    """The sources with PEP 740 publisher attestations: ``file (publisher, …)``."""

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def line(self) -> str:
        return f"{self.state:9} {self.collection}/{self.variant}: {self.detail}"

    def attested_lines(self) -> list[str]:
        return [f"attested  {self.collection}/{self.variant}: {a}" for a in self.attested]


@dataclass(frozen=True)
class CheckReport:
    config_problems: tuple[str, ...]
    locks: tuple[LockStatus, ...]

    @property
    def ok(self) -> bool:
        return not self.config_problems and all(s.ok for s in self.locks)

    def lines(self) -> list[str]:
        out = [f"config    {p}" for p in self.config_problems]
        if not self.config_problems:
            out.append("ok        config")
        for status in self.locks:
            out.append(status.line())
            out += status.attested_lines()
        return out

    def problems(self) -> list[str]:
        found = (s for s in self.locks if s.state not in ("ok", "unchecked"))
        return [*self.config_problems, *(s.line() for s in found)]


def _error_lines(exc: AffineurError) -> tuple[str, ...]:
    return tuple(exc.causes) or (exc.one_line(),)


def _lock_problems(graph: Graph, collection: str, variant: str) -> list[str]:
    """What a schema-valid, reference-complete lock can still get wrong."""
    problems = []
    if (graph.collection, graph.variant) != (collection, variant):
        problems.append(
            f"holds {graph.collection}/{graph.variant}, but lives in lock/{collection}/{variant}"
        )
    counts = Counter(graph.nodes[k].name for k in install_closure(graph))
    problems += [f"installs {n} versions of {name}" for name, n in sorted(counts.items()) if n > 1]
    try:
        build_order(graph.nodes)
    except AffineurError as exc:
        problems.append(exc.message)
    return problems


def _read(path: Path, collection: str, variant: str) -> tuple[Graph | None, LockStatus | None]:
    """The lock, or the status saying why it is missing or unusable."""
    rel = path.relative_to(path.parents[3]).as_posix()
    try:
        graph = read_lock(path)
    except AffineurError as exc:
        return None, LockStatus(collection, variant, "invalid", "; ".join(_error_lines(exc)))
    except (KeyError, TypeError, ValueError) as exc:
        # A schema-valid document the model still cannot take: report, never crash CI.
        return None, LockStatus(collection, variant, "invalid", f"{rel}: {exc!r}")
    if graph is None:
        return None, LockStatus(collection, variant, "missing", f"no {rel}; {RELOCK}")
    problems = _lock_problems(graph, collection, variant)
    if problems:
        return None, LockStatus(collection, variant, "invalid", f"{rel}: {'; '.join(problems)}")
    return graph, None


def _lock_files(root: Path) -> list[tuple[str, str, Path]]:
    return [(c, v, path) for (c, v), path in find_locks(root).items()]


def _attested(graph: Graph) -> tuple[tuple[str, ...], int]:
    """The sdists the index vouched for with PEP 740 attestations, and all sdists."""
    sdists = sorted(
        (n.sdist for n in graph.nodes.values() if n.sdist is not None and not n.prebuilt),
        key=lambda ref: ref.filename,
    )
    attested = tuple(
        f"{ref.filename} ({', '.join(p.describe() for p in ref.attested_by)})"
        for ref in sdists
        if ref.attested_by
    )
    return attested, len(sdists)


def _check_locks(project: Project) -> list[LockStatus]:
    statuses = []
    expected: set[tuple[str, str]] = set()
    for c in project.collections.values():
        for v in c.variants:
            expected.add((c.name, v))
            path = LockPaths.of(project.root, c.name, v).graph
            graph, status = _read(path, c.name, v)
            if status is None:
                assert graph is not None
                if lock_is_fresh(project, c, project.variants[v]):
                    installed = len(install_closure(graph))
                    attested, sources = _attested(graph)
                    status = LockStatus(
                        c.name,
                        v,
                        "ok",
                        f"{len(graph.nodes)} packages, {installed} installed, "
                        f"{len(attested)} of {sources} sources with publisher attestations",
                        attested,
                    )
                else:
                    status = LockStatus(
                        c.name, v, "stale", f"the config changed since it was locked; {RELOCK}"
                    )
            statuses.append(status)
    for collection, variant, _path in _lock_files(project.root):
        if (collection, variant) not in expected:
            statuses.append(
                LockStatus(
                    collection,
                    variant,
                    "orphan",
                    f"no collection {collection!r} builds variant {variant!r}; "
                    f"delete lock/{collection}/{variant}/",
                )
            )
    return sorted(statuses, key=lambda s: (s.collection, s.variant))


def check_project(root: Path) -> CheckReport:
    """Validate config and locks and check freshness; never touches the network."""
    try:
        project = load_project(root)
    except AffineurError as exc:
        # Freshness needs a loaded project; the locks can still be validated alone.
        locks = []
        for collection, variant, path in _lock_files(root):
            _graph, status = _read(path, collection, variant)
            locks.append(
                status
                or LockStatus(collection, variant, "unchecked", "valid; freshness needs the config")
            )
        return CheckReport(_error_lines(exc), tuple(locks))
    return CheckReport((), tuple(_check_locks(project)))
