"""``discovery: source``: discovery environments of wheels built here, never downloaded.

Building a tool needs its own build environment built first, and so on down; a
package met again on the way down is a build-time cycle, reported as its path
before anything hangs. The lock stage decides what to build and in which order;
the building itself is stage 2's, reached through the :class:`SourceBuilds`
interface that the run stage wires to the real builder (lock/ never imports
build/).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from packaging.utils import NormalizedName
from packaging.version import Version

from affineur import graph as g
from affineur.errors import AffineurError
from affineur.lock._buildenv import BuildEnvironments, build_edges
from affineur.lock._candidates import IndexCandidates
from affineur.lock._sources import LockIndex

__all__ = ["SourceBuilds", "SourceWheels"]


class SourceBuilds(Protocol):
    """Gives a wheel of a lock node, built here from its sdist."""

    def wheel(
        self, node: g.Node, env: Sequence[tuple[g.Node, Path]], target: Mapping[str, str]
    ) -> Path:
        """Build ``node`` for ``target`` (or take it from the cache) and return its wheel.

        ``env`` is its whole build environment, each member with its wheel: one
        this object built earlier, or the upstream wheel of a ``prebuilt`` member.
        The node and target are what stage 2 will see in the lock (name, version,
        sdist, build environment), so a build made here is found again there.
        """
        ...


class SourceWheels:
    """A :class:`~affineur.lock._buildenv.DiscoveryWheels` that builds every wheel here."""

    def __init__(self, builds: SourceBuilds, index: LockIndex, target: Mapping[str, str]) -> None:
        self.builds = builds
        self.index = index
        self.target = target
        self._building: list[tuple[NormalizedName, Version]] = []
        self._made: dict[tuple[NormalizedName, Version], tuple[g.Node, Path]] = {}

    def wheel(
        self,
        name: NormalizedName,
        version: Version,
        source: IndexCandidates,
        envs: BuildEnvironments,
    ) -> Path:
        return self._made_here(name, version, source, envs)[1]

    def _made_here(
        self,
        name: NormalizedName,
        version: Version,
        source: IndexCandidates,
        envs: BuildEnvironments,
    ) -> tuple[g.Node, Path]:
        if (name, version) in self._made:
            return self._made[(name, version)]
        if (name, version) in self._building:
            start = self._building.index((name, version))
            cycle = [f"{n}=={v}" for n, v in self._building[start:]] + [f"{name}=={version}"]
            raise AffineurError(
                "build-time cycle: " + " -> ".join(cycle), stage="cycle", hint=g.cycle_hint(cycle)
            )
        pkg = source.package(name, version)
        source.dependencies(name, version)  # fills in the sdist or the prebuilt wheel
        if pkg.settings.prebuilt:
            assert pkg.wheel is not None
            made = (
                g.Node(name=name, version=str(version), wheel=pkg.wheel, prebuilt=True),
                self.index.discovery_wheel(name, version),
            )
            self._made[(name, version)] = made
            return made
        self._building.append((name, version))
        try:
            build = envs.requirements(pkg, source)
            env = envs.environment(pkg, source) if build.all() else None
            members = sorted(env.versions.items()) if env else []
            built = [self._made_here(n, v, source, envs) for n, v in members]
            sdist = source.sdist(pkg)
            node = g.Node(
                name=name,
                version=str(version),
                sdist=sdist.ref,
                edges=tuple(build_edges(build, env, envs.policy.environment)) if env else (),
                build_env=tuple(g.node_key(n, str(v)) for n, v in members),
                crates=sdist.crates,
            )
            made = (node, self.builds.wheel(node, built, self.target))
        finally:
            self._building.pop()
        self._made[(name, version)] = made
        return made
