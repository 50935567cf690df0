"""What a re-lock moved, and why: the first thing a person asks after ``affineur lock``.

A re-lock keeps every pin it can (see :mod:`._policy`), so each move has a cause
that can be named: the user asked for it (``--upgrade``), a requirement or a
constraint no longer admits the old version, a package is newly needed or no
longer needed. Pure: two graphs in, lines out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from affineur import graph as g
from affineur.lock._diff import pair_versions
from affineur.lock._policy import Upgrade

__all__ = ["Move", "explain_moves"]


@dataclass(frozen=True, order=True)
class Move:
    name: str
    old: str | None
    new: str | None
    reason: str

    def line(self) -> str:
        if self.old is None:
            return f"{self.name} {self.new} added: {self.reason}"
        if self.new is None:
            return f"{self.name} {self.old} removed: {self.reason}"
        return f"{self.name} {self.old} -> {self.new}: {self.reason}"


def _versions(graph: g.Graph | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for node in graph.nodes.values() if graph else ():
        out.setdefault(node.name, []).append(node.version)
    return out


def _incoming(graph: g.Graph, name: str, version: str) -> list[tuple[str, str]]:
    """(who asked, requirement text) of every edge to ``name==version``, sorted."""
    key = g.node_key(name, version)
    found = [("the collection", e.req) for e in graph.toplevel if e.key == key]
    for node in graph.nodes.values():
        found += [(node.name, e.req) for e in node.edges if e.key == key]
    return sorted(set(found))


def _excludes(text: str, name: str, version: str) -> bool:
    try:
        req = Requirement(text)
        old = Version(version)
    except (InvalidRequirement, InvalidVersion):
        return False
    return canonicalize_name(req.name) == name and not req.specifier.contains(old, prereleases=True)


def _reason(
    new_graph: g.Graph,
    name: str,
    old: str,
    new: str,
    constraints: Sequence[str],
    upgrade: Upgrade,
) -> str:
    if upgrade is True:
        return "--upgrade-all"
    if upgrade and name in upgrade:
        return f"--upgrade {name}"
    for who, text in _incoming(new_graph, name, new):
        if _excludes(text, name, old):
            return f"{who} needs {text}"
    for text in constraints:
        if _excludes(text, name, old):
            return f"constraint {text}"
    return f"{old} no longer fits with the rest of the lock"


def explain_moves(
    old: g.Graph | None,
    new: g.Graph,
    *,
    constraints: Sequence[str] = (),
    upgrade: Upgrade = frozenset(),
) -> list[Move]:
    """Every version that changed from ``old`` to ``new``, with its cause (none if no ``old``)."""
    if old is None:
        return []
    before, after = _versions(old), _versions(new)
    moves = []
    for name in sorted(set(before) | set(after)):
        for was, now in pair_versions(before.get(name, ()), after.get(name, ())):
            if was is None:
                assert now is not None
                asked = _incoming(new, name, now)
                reason = f"{asked[0][0]} needs {asked[0][1]}" if asked else "newly needed"
            elif now is None:
                reason = "no longer needed"
            else:
                reason = _reason(new, name, was, now, constraints, upgrade)
            moves.append(Move(name, was, now, reason))
    return moves
