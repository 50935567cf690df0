"""Stage 1: lock a collection for a variant into ``lock/<collection>/<variant>/``.

The steps, in order:

1. resolve the collection's install closure jointly (one version per project);
2. for every package, and recursively for every build requirement, discover its
   build requirements and resolve its whole build environment as one set,
   preferring versions already in the graph;
3. refuse build-time cycles up front, with the path and the setting that breaks it;
4. write graph.json and build-order.json as deterministic bytes.

The previous lock (and the locks of the collection's other variants) are
preferences, so a re-lock changes nothing it does not have to.

:class:`Locker` only runs these steps; what it works with is passed in: the
candidate source over an index (:mod:`._candidates`), the build environments
(:mod:`._buildenv`) and graph assembly (:mod:`._assemble`). :func:`lock` wires
the networked ones; tests pass a frozen index and frozen hooks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from affineur import graph as g
from affineur.config import (
    Collection,
    Project,
    Settings,
    Variant,
    effective_settings,
    target_environment,
)
from affineur.errors import AffineurError
from affineur.index import IndexClient, SdistStore, UpstreamWheels
from affineur.lock._assemble import assemble
from affineur.lock._buildenv import (
    BuildEnvironments,
    BuildHooks,
    DiscoveryWheels,
    UpstreamDiscoveryWheels,
)
from affineur.lock._candidates import IndexCandidates, SettingsFn
from affineur.lock._check import plugin_problems
from affineur.lock._discovery import BuildRequirements, Discoverer
from affineur.lock._files import LockPaths, input_hash, read_lock, write_lock
from affineur.lock._moves import explain_moves
from affineur.lock._policy import ResolvePolicy, Upgrade, previous_preferences
from affineur.lock._resolver import Resolution, resolve
from affineur.lock._source_mode import SourceBuilds, SourceWheels
from affineur.lock._sources import LockIndex, NetworkIndex
from affineur.pep517 import CrateStore, Interpreter, crates_registry, interpreter_of
from affineur.progress import (
    LockFinished,
    LockStarted,
    NullReporter,
    PinMove,
    PinsMoved,
    Reporter,
)

__all__ = ["LockRequest", "Locker", "lock", "lock_request", "make_locker", "previous_locks"]


@dataclass(frozen=True)
class LockRequest:
    """What to lock, for which target, and what the result records."""

    collection: str
    variant: str
    requirements: Sequence[str]
    policy: ResolvePolicy
    target: Mapping[str, str]
    input_hash: str
    discovery: str = "wheels"


@dataclass
class Locker:
    """Locks one collection for one variant with the collaborators it is given."""

    request: LockRequest
    candidates: IndexCandidates
    build_envs: BuildEnvironments
    reporter: Reporter = field(default_factory=NullReporter)

    # --- NodeFacts, for graph assembly --------------------------------------

    def node(self, name: NormalizedName, version: Version) -> g.Node:
        self.candidates.dependencies(name, version)  # fills in the sdist or wheel
        pkg = self.candidates.package(name, version)
        return g.Node(
            name=name,
            version=str(version),
            sdist=pkg.sdist.ref if pkg.sdist else None,
            wheel=pkg.wheel,
            prebuilt=pkg.settings.prebuilt,
            git=pkg.git,
            crates=pkg.sdist.crates if pkg.sdist and not pkg.settings.prebuilt else None,
        )

    def prefetch(self, name: NormalizedName, version: Version) -> None:
        # Only a package the lock has met already: adding one here would reorder
        # the source's memory, which its preferences follow.
        pkg = self.candidates.packages.get((name, version))
        if pkg is not None:
            self.build_envs.prefetch(pkg, self.candidates)

    def build(
        self, name: NormalizedName, version: Version
    ) -> tuple[BuildRequirements, Resolution | None]:
        pkg = self.candidates.package(name, version)
        build = self.build_envs.requirements(pkg, self.candidates)
        if not build.all():
            return build, None
        return build, self.build_envs.environment(pkg, self.candidates)

    # --- the whole lock -----------------------------------------------------

    def run(self) -> g.Graph:
        req = self.request
        self.reporter.report(LockStarted(req.collection, req.variant, tuple(req.requirements)))
        try:
            install = resolve(self.candidates, req.policy.install_request(req.requirements))
            toplevel, nodes = assemble(install, self, req.policy.environment)
        finally:
            self.build_envs.close()
        installed = g.install_closure(g.Graph("", "", "", {}, toplevel, nodes))
        self.reporter.report(LockFinished(req.collection, req.variant, len(nodes), len(installed)))
        return g.Graph(
            collection=req.collection,
            variant=req.variant,
            input_hash=req.input_hash,
            target=req.target,
            toplevel=toplevel,
            nodes=nodes,
            discovery=req.discovery,
        )


# --- wiring the networked collaborators -------------------------------------


def previous_locks(project: Project, collection: Collection, variant: Variant) -> list[g.Graph]:
    """This variant's own previous lock first, then the collection's other variants'."""
    graphs = []
    for name in [variant.name, *(v for v in collection.variants if v != variant.name)]:
        found = read_lock(LockPaths.of(project.root, collection.name, name).graph)
        if found is not None:
            graphs.append(found)
    return graphs


def settings_function(project: Project, variant: Variant) -> SettingsFn:
    def settings_for(name: str, version: Version | None) -> Settings:
        return effective_settings(
            variant=variant,
            override=project.override_for(name),
            version=None if version is None else str(version),
        )

    return settings_for


def make_locker(
    request: LockRequest,
    *,
    index: LockIndex,
    hooks: BuildHooks,
    settings_for: SettingsFn,
    previous: Sequence[g.Graph] = (),
    builds: SourceBuilds | None = None,
    reporter: Reporter | None = None,
    lookahead: int = 0,
) -> Locker:
    """A locker over ``index`` and ``hooks`` (networked in :func:`lock`, frozen in tests).

    ``builds`` builds wheels here for ``discovery: source`` (the run stage passes
    stage 2's builder); other modes never use it. ``lookahead`` threads discover
    queued packages ahead of the lock (see :class:`BuildEnvironments`).
    """
    reporter = reporter or NullReporter()
    if request.discovery == "source":
        if builds is None:
            raise ValueError("discovery: source needs a builder for its own wheels")
        wheels: DiscoveryWheels = SourceWheels(builds, index, request.target)
    else:
        wheels = UpstreamDiscoveryWheels(index)
    build_envs = BuildEnvironments(
        hooks, request.policy, wheels=wheels, reporter=reporter, lookahead=lookahead
    )
    candidates = IndexCandidates(
        index,
        settings_for=settings_for,
        python=Version(request.policy.environment["python_full_version"]),
        hook=build_envs,
        reporter=reporter,
        previous=previous,
        pins=exact_pins([*request.requirements, *request.policy.constraints]),
    )
    return Locker(request, candidates, build_envs, reporter)


def exact_pins(requirements: Sequence[str]) -> dict[NormalizedName, list[Version]]:
    """The versions requirements name exactly (``==1.2``, not ``==1.*``), by project."""
    pins: dict[NormalizedName, list[Version]] = {}
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue  # the resolver reports it, with where it came from
        for spec in req.specifier:
            if spec.operator in ("==", "===") and "*" not in spec.version:
                try:
                    pins.setdefault(canonicalize_name(req.name), []).append(Version(spec.version))
                except InvalidVersion:
                    continue
    return pins


def lock_request(
    project: Project,
    collection: Collection,
    variant: Variant,
    *,
    previous: Sequence[g.Graph],
    upgrade: Upgrade,
) -> LockRequest:
    """What the config asks of one lock."""
    settings_for = settings_function(project, variant)
    target = target_environment(variant)
    policy = ResolvePolicy(
        environment=g.marker_environment(target),
        # Pins and constraints in any override shape every resolution of the lock,
        # install and build alike, like the collection's own.
        constraints=(
            *collection.constraints,
            *(c for o in sorted(project.overrides) for c in settings_for(o, None).constraints),
        ),
        preferences=previous_preferences(previous, upgrade),
        allow_prereleases=collection.prereleases,
        constraint_origin=f"{collection.file} and overrides/",
    )
    return LockRequest(
        collection=collection.name,
        variant=variant.name,
        requirements=collection.requirements,
        policy=policy,
        target=target,
        input_hash=input_hash(project, collection, variant),
        discovery=variant.discovery,
    )


def lock(
    project: Project,
    collection: Collection,
    variant: Variant,
    *,
    client: IndexClient,
    workdir: Path,
    reporter: Reporter | None = None,
    upgrade: Upgrade = frozenset(),
    builds: SourceBuilds | None = None,
    interpreter: Interpreter | None = None,
) -> LockPaths:
    """Lock one collection for one variant and write it; the entry point for doit and the CLI.

    Discovery hooks run with the variant's Python (``interpreter``, else the one its
    ``python`` names on this machine), and upstream wheels are chosen for its tags.
    """
    reporter = reporter or NullReporter()
    missing = plugin_problems(project)
    if missing:
        raise AffineurError(
            missing[0] if len(missing) == 1 else "overrides name plugins that are not installed",
            causes=tuple(missing) if len(missing) > 1 else (),
            stage="config",
            hint="install the distribution that provides the plugin into affineur's environment",
        )
    interpreter = interpreter or interpreter_of(variant)
    paths = LockPaths.of(project.root, collection.name, variant.name)
    previous = previous_locks(project, collection, variant)
    locker = make_locker(
        lock_request(project, collection, variant, previous=previous, upgrade=upgrade),
        index=NetworkIndex(
            client,
            SdistStore(workdir / "sdists"),
            UpstreamWheels(
                client,
                workdir / "upstream-wheels",
                tags=interpreter.tags,
                python=interpreter.executable,
            ),
            reporter,
            crates=CrateStore(workdir / "sdists" / "crates"),
            crates_registry=crates_registry(variant.crates_index) if variant.crates_index else None,
            pkg_info=workdir / "discovery" / "pkg-info",
        ),
        hooks=Discoverer(
            workdir / "discovery",
            logs=workdir / "logs" / "lock" / variant.name,
            timeout=variant.timeout,
            sandbox=variant.sandbox,
            network=not variant.network_isolation,
            hidden=(project.root, workdir),
            interpreter=interpreter,
            # The builds' environment store keeps its files there too (build/files):
            # a release's upstream wheel and the wheel built from it share their sources.
            files=workdir / "files",
        ),
        settings_for=settings_function(project, variant),
        previous=previous,
        builds=builds,
        reporter=reporter,
        # One hook process per core looks ahead; in source mode looking ahead
        # would build wheels on a guess, so it waits for the lock to ask.
        lookahead=0 if variant.discovery == "source" else os.cpu_count() or 1,
    )
    graph = locker.run()
    write_lock(graph, paths)
    own = next((p for p in previous if p.variant == variant.name), None)
    moves = explain_moves(
        own, graph, constraints=locker.request.policy.constraints, upgrade=upgrade
    )
    if moves:
        reporter.report(
            PinsMoved(
                collection.name,
                variant.name,
                tuple(PinMove(m.name, m.old, m.new, m.reason) for m in moves),
            )
        )
    return paths
