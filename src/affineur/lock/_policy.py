"""How every resolution of one lock is shaped: target, constraints, preferences.

The install closure and each build environment are resolved separately, but
under one policy, so a constraint in the collection or an override holds for
build tools too, and versions already pinned are kept wherever they fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from affineur import graph as g
from affineur.lock._resolver import ResolveRequest

__all__ = ["ResolvePolicy", "Upgrade", "previous_preferences"]

Upgrade = frozenset[str] | bool
"""Names a re-lock may move freely (``True``: every name)."""


@dataclass(frozen=True)
class ResolvePolicy:
    environment: Mapping[str, str]
    """The marker environment requirements are evaluated in."""
    constraints: Sequence[str] = ()
    preferred: Mapping[NormalizedName, Version] = field(default_factory=dict)
    allow_prereleases: bool = False
    constraint_origin: str = "constraints"

    def request(
        self,
        requirements: Sequence[str],
        also_preferred: Mapping[NormalizedName, Version] | None = None,
    ) -> ResolveRequest:
        """A request under this policy; ``also_preferred`` fills names it does not prefer."""
        preferred = dict(self.preferred)
        for name, version in (also_preferred or {}).items():
            preferred.setdefault(name, version)
        return ResolveRequest(
            requirements=requirements,
            environment=self.environment,
            constraints=self.constraints,
            preferred=preferred,
            allow_prereleases=self.allow_prereleases,
            constraint_origin=self.constraint_origin,
        )


def previous_preferences(
    previous: Sequence[g.Graph], upgrade: Upgrade
) -> dict[NormalizedName, Version]:
    """Versions to keep: the previous lock's install closure first, then the other variants'."""
    preferred: dict[NormalizedName, Version] = {}
    for graph in previous:
        for key in g.install_closure(graph):
            node = graph.nodes[key]
            name = canonicalize_name(node.name)
            if upgrade is True or (upgrade and name in upgrade):
                continue
            preferred.setdefault(name, Version(node.version))
    return preferred
