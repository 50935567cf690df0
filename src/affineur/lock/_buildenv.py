"""What each package needs in order to be built, resolved as one set.

For one package: its build requirements (``[build-system]`` and the
``get_requires_*`` hooks, through a :class:`BuildHooks`), then its whole build
environment resolved jointly under the lock's policy, preferring versions the
lock already holds. Discovery hooks run in environments of wheels that a
:class:`DiscoveryWheels` supplies: upstream ones by default, or wheels built
here in ``discovery: source`` mode.

Every method takes the lock's candidate source as an argument rather than
holding it: the source needs this object for its last metadata resort, and this
object needs the source to resolve, so neither owns the other.

Discovery is most of a lock's time, and the packages waiting in the lock's queue
do not depend on one another's hooks: :meth:`BuildEnvironments.prefetch` starts
theirs in a bounded pool of threads (one hook process each) while the lock works
through the queue in order. Only the hooks' answers, cached by their inputs, pass
from that pool to the lock, so the lock decides exactly what it would decide alone.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from affineur import graph as g
from affineur.config import Settings
from affineur.lock._candidates import IndexCandidates, Package
from affineur.lock._discovery import BuildRequirements, ResolveFn, WheelFn
from affineur.lock._policy import ResolvePolicy
from affineur.lock._resolver import Resolution, ResolveRequest, resolve
from affineur.lock._sources import LockIndex
from affineur.progress import DiscoveringRequirements, Reporter

__all__ = [
    "BuildEnvironments",
    "BuildHooks",
    "DiscoveryWheels",
    "UpstreamDiscoveryWheels",
    "build_edges",
]


class BuildHooks(Protocol):
    """Runs discovery: :class:`~affineur.lock._discovery.Discoverer` is the real one.

    Both calls run untrusted code in a subprocess (unless cached): call each at
    most once per package.
    """

    def requirements(
        self,
        name: NormalizedName,
        version: Version,
        sdist: Path,
        sha256: str,
        settings: Settings,
        resolve: ResolveFn,
        wheels: WheelFn,
    ) -> BuildRequirements: ...

    def prepare_metadata(
        self,
        name: NormalizedName,
        version: Version,
        sdist: Path,
        sha256: str,
        settings: Settings,
        requirements: BuildRequirements,
        resolve: ResolveFn,
        wheels: WheelFn,
    ) -> bytes | None: ...


class DiscoveryWheels(Protocol):
    """Supplies the wheels a discovery environment is made of."""

    def wheel(
        self,
        name: NormalizedName,
        version: Version,
        source: IndexCandidates,
        envs: BuildEnvironments,
    ) -> Path: ...


class UpstreamDiscoveryWheels:
    """``discovery: wheels``: the index's wheels (pip builds one when there is none)."""

    def __init__(self, index: LockIndex) -> None:
        self.index = index

    def wheel(
        self,
        name: NormalizedName,
        version: Version,
        source: IndexCandidates,
        envs: BuildEnvironments,
    ) -> Path:
        return self.index.discovery_wheel(name, version)


def build_edges(
    build: BuildRequirements, env: Resolution, environment: Mapping[str, str]
) -> list[g.Edge]:
    """Typed edges from a package to the members of its build environment it asked for.

    A requirement whose marker excludes the target was never part of the
    environment, so it gets no edge, even when another requirement brought in the
    same name (``setuptools; python_version < "3.7"`` beside ``setuptools>=61``).
    """
    edges = []
    typed: tuple[tuple[g.ReqType, tuple[str, ...]], ...] = (
        ("build-system", build.build_system),
        ("build-backend", build.build_backend),
        ("build-sdist", build.build_sdist),
    )
    for req_type, reqs in typed:
        for text in reqs:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({**environment, "extra": ""}):
                continue
            name = canonicalize_name(req.name)
            if name in env.versions:
                edges.append(g.Edge(g.node_key(name, str(env.versions[name])), req_type, text))
    return edges


class BuildEnvironments:
    """Build requirements and build environments of the lock's packages, each found once.

    ``lookahead`` threads (0: none) run the discovery of queued packages ahead of
    the lock; see :meth:`prefetch`.
    """

    def __init__(
        self,
        hooks: BuildHooks,
        policy: ResolvePolicy,
        *,
        wheels: DiscoveryWheels,
        reporter: Reporter,
        lookahead: int = 0,
    ) -> None:
        self.hooks = hooks
        self.policy = policy
        self.wheels = wheels
        self.reporter = reporter
        self._requirements: dict[tuple[NormalizedName, Version], BuildRequirements] = {}
        self._environments: dict[tuple[NormalizedName, Version], Resolution] = {}
        self._pool = (
            ThreadPoolExecutor(lookahead, thread_name_prefix="discovery") if lookahead else None
        )
        self._ahead: dict[tuple[NormalizedName, Version], Future[None]] = {}
        self._closing = threading.Event()

    # --- looking ahead --------------------------------------------------------

    def prefetch(self, pkg: Package, source: IndexCandidates) -> None:
        """Start discovering ``pkg``'s build requirements in the background.

        A guess, made on a :meth:`~IndexCandidates.shadow` of the lock's source with
        the preferences of this moment: it resolves the discovery environment as
        :meth:`requirements` will, downloads what that needs and runs the hooks,
        whose answer the hooks cache keeps under all of those inputs. When the lock
        asks, it finds the answer cached, or waits for the hooks still running;
        if the guess was wrong (another environment) it runs the hooks itself.
        Errors are left for the lock to meet and report.
        """
        key = (pkg.name, pkg.version)
        if self._pool is None or key in self._requirements or key in self._ahead:
            return
        pinned = source.pinned()
        self._ahead[key] = self._pool.submit(self._look_ahead, pkg, source.shadow(), pinned)

    def _look_ahead(
        self, pkg: Package, shadow: IndexCandidates, pinned: Mapping[NormalizedName, Version]
    ) -> None:
        if self._closing.is_set():
            return

        key = g.node_key(pkg.name, str(pkg.version))

        def pins(requirements: Sequence[str]) -> Mapping[NormalizedName, Version]:
            if not requirements:
                return {}
            request = self.policy.build_request(key, requirements, pinned)
            return resolve(shadow, request).versions

        def wheel(name: NormalizedName, version: Version) -> Path:
            return self.wheels.wheel(name, version, shadow, self)

        try:
            sdist = shadow.sdist(shadow.package(pkg.name, pkg.version))
            self.hooks.requirements(
                pkg.name, pkg.version, sdist.path, sdist.ref.sha256, pkg.settings, pins, wheel
            )
        except Exception:
            # A guess that fails (a package only its backend can describe, a hook
            # that breaks) is the lock's to meet again and report, in order.
            return

    def close(self) -> None:
        """Drop what has not started, and wait for hooks still running."""
        self._closing.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    # --- what the lock asks -----------------------------------------------------

    def requirements(self, pkg: Package, source: IndexCandidates) -> BuildRequirements:
        key = (pkg.name, pkg.version)
        if key not in self._requirements:
            sdist = source.sdist(pkg)
            self.reporter.report(DiscoveringRequirements(str(pkg.name), str(pkg.version)))
            self._requirements[key] = self.hooks.requirements(
                pkg.name,
                pkg.version,
                sdist.path,
                sdist.ref.sha256,
                pkg.settings,
                self.pins(pkg, source),
                self._wheels(source),
            )
        return self._requirements[key]

    def environment(self, pkg: Package, source: IndexCandidates) -> Resolution:
        """The package's whole build environment, resolved once."""
        key = (pkg.name, pkg.version)
        if key not in self._environments:
            wanted = self.requirements(pkg, source).all()
            self._environments[key] = resolve(source, self._request(pkg, wanted, source))
        return self._environments[key]

    def metadata(self, pkg: Package, source: IndexCandidates) -> bytes | None:
        """Core metadata from the backend's ``prepare_metadata_for_build_wheel`` hook."""
        build = self.requirements(pkg, source)
        sdist = source.sdist(pkg)
        return self.hooks.prepare_metadata(
            pkg.name,
            pkg.version,
            sdist.path,
            sdist.ref.sha256,
            pkg.settings,
            build,
            self.pins(pkg, source),
            self._wheels(source),
        )

    def pins(self, pkg: Package, source: IndexCandidates) -> ResolveFn:
        """Resolves a requirement list the way ``pkg``'s build environment is resolved."""

        def run(requirements: Sequence[str]) -> Mapping[NormalizedName, Version]:
            if not requirements:
                return {}
            return resolve(source, self._request(pkg, requirements, source)).versions

        return run

    def _request(
        self, pkg: Package, requirements: Sequence[str], source: IndexCandidates
    ) -> ResolveRequest:
        key = g.node_key(pkg.name, str(pkg.version))
        return self.policy.build_request(key, requirements, source.pinned())

    def _wheels(self, source: IndexCandidates) -> WheelFn:
        def wheel(name: NormalizedName, version: Version) -> Path:
            return self.wheels.wheel(name, version, source, self)

        return wheel
