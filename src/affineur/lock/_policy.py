"""How every resolution of one lock is shaped: target, constraints, preferences.

The install closure and each build environment are resolved separately, but
under one policy, so a constraint in the collection or an override holds for
build tools too, and every version a previous lock pinned — installed or
build-only — is kept wherever it still fits. A pin moves only when a
requirement or constraint forces it, or when the user names it (``--upgrade``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from affineur import graph as g
from affineur.lock._resolver import ResolveRequest

__all__ = ["Preferences", "ResolvePolicy", "Upgrade", "previous_preferences"]

Upgrade = frozenset[str] | bool
"""Names a re-lock may move freely (``True``: every name)."""

Pins = Mapping[NormalizedName, Version]


@dataclass(frozen=True)
class Preferences:
    """What earlier locks pinned, by where it was pinned."""

    install: Pins = field(default_factory=dict)
    """The install closures (this variant's lock first, then the other variants')."""
    build_only: Pins = field(default_factory=dict)
    """Packages that were only in build environments (the newest, when several)."""
    envs: Mapping[g.NodeKey, Pins] = field(default_factory=dict)
    """Each package's own previous build environment."""


@dataclass(frozen=True)
class ResolvePolicy:
    environment: Mapping[str, str]
    """The marker environment requirements are evaluated in."""
    constraints: Sequence[str] = ()
    preferences: Preferences = field(default_factory=Preferences)
    allow_prereleases: bool = False
    constraint_origin: str = "constraints"

    def install_request(self, requirements: Sequence[str]) -> ResolveRequest:
        """The install closure keeps its pins; a package that was build-only keeps its too."""
        prefs = self.preferences
        return self._request(requirements, prefs.install, prefs.build_only)

    def build_request(
        self, key: g.NodeKey, requirements: Sequence[str], in_lock: Pins
    ) -> ResolveRequest:
        """The build environment of ``key``: its own previous one first, so a re-lock
        that adds a package needing an older tool does not move everybody else's
        tool; then the install pins; then what earlier locks and this one hold."""
        prefs = self.preferences
        return self._request(
            requirements, prefs.envs.get(key, {}), prefs.install, prefs.build_only, in_lock
        )

    def _request(self, requirements: Sequence[str], *layers: Pins) -> ResolveRequest:
        preferred: dict[NormalizedName, Version] = {}
        for layer in layers:
            for name, version in layer.items():
                preferred.setdefault(name, version)
        return ResolveRequest(
            requirements=requirements,
            environment=self.environment,
            constraints=self.constraints,
            preferred=preferred,
            allow_prereleases=self.allow_prereleases,
            constraint_origin=self.constraint_origin,
        )


def previous_preferences(previous: Sequence[g.Graph], upgrade: Upgrade) -> Preferences:
    """Every pin of ``previous`` (its own lock first) that ``upgrade`` does not free."""
    if upgrade is True:
        return Preferences()
    freed = frozenset() if upgrade is False else upgrade

    def kept(name: str) -> bool:
        return canonicalize_name(name) not in freed

    install: dict[NormalizedName, Version] = {}
    build_only: dict[NormalizedName, Version] = {}
    envs: dict[g.NodeKey, dict[NormalizedName, Version]] = {}
    for graph in previous:
        closure = g.install_closure(graph)
        for key in closure:
            node = graph.nodes[key]
            if kept(node.name):
                install.setdefault(canonicalize_name(node.name), Version(node.version))
        members = set(closure)
        newest: dict[NormalizedName, Version] = {}
        for key, node in graph.nodes.items():
            if key not in members and kept(node.name):
                name = canonicalize_name(node.name)
                newest[name] = max(newest.get(name, Version(node.version)), Version(node.version))
            if key in envs or node.prebuilt:
                continue
            env: dict[NormalizedName, Version] = {}
            for member in node.build_env:
                dep = graph.nodes[member]
                if kept(dep.name):
                    env[canonicalize_name(dep.name)] = Version(dep.version)
            envs[key] = env
        for name, version in newest.items():
            build_only.setdefault(name, version)
    return Preferences(install=install, build_only=build_only, envs=envs)
