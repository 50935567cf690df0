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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from affineur import graph as g
from affineur.build import BuildCache, Builder, BuildInputs, BuildKey, BuildRequest, compute_key
from affineur.config import (
    Collection,
    Project,
    Settings,
    Variant,
    effective_settings,
    find_patches,
    patch_hashes,
    target_environment,
)
from affineur.errors import AffineurError
from affineur.index import (
    DistFile,
    IndexClient,
    SdistStore,
    UpstreamWheels,
    UrlSource,
    sha256_file,
    source_url,
)
from affineur.index import requires_dist as wheel_requires_dist
from affineur.lock._discovery import BuildRequirements, Discoverer, ResolveFn
from affineur.lock._files import LockPaths, input_hash, lock_is_fresh, read_lock, write_lock
from affineur.lock._metadata import requires_dist, static_requires_dist
from affineur.lock._resolver import Resolution, ResolveRequest, VersionInfo, resolve
from affineur.pep517 import read_pkg_info
from affineur.progress import NullReporter, Reporter

__all__ = ["Locker", "build_edges", "lock", "previous_locks"]


def build_edges(build: BuildRequirements, env: Resolution) -> list[g.Edge]:
    """Typed edges from a package to the members of its build environment it asked for."""
    edges = []
    typed: tuple[tuple[g.ReqType, tuple[str, ...]], ...] = (
        ("build-system", build.build_system),
        ("build-backend", build.build_backend),
        ("build-sdist", build.build_sdist),
    )
    for req_type, reqs in typed:
        for text in reqs:
            name = canonicalize_name(Requirement(text).name)
            if name in env.versions:
                edges.append(g.Edge(g.node_key(name, str(env.versions[name])), req_type, text))
    return edges


# --- the candidate source for the resolver ----------------------------------


def _preferred_sdist(files: Iterable[DistFile]) -> DistFile | None:
    sdists = [f for f in files if f.kind == "sdist"]
    # .tar.gz is the standard sdist format (PEP 625); .zip only when it is all there is.
    sdists.sort(key=lambda f: (not f.filename.endswith(".tar.gz"), f.filename))
    return sdists[0] if sdists else None


@dataclass
class _Package:
    """What the locker learned about one name==version."""

    name: NormalizedName
    version: Version
    settings: Settings
    sdist: g.FileRef | None = None
    sdist_path: Path | None = None
    wheel: g.FileRef | None = None
    requires: list[str] | None = None
    build: BuildRequirements | None = None
    env: Resolution | None = None


@dataclass
class Locker:
    """Locks one collection for one variant."""

    project: Project
    collection: Collection
    variant: Variant
    client: IndexClient
    workdir: Path
    reporter: Reporter = field(default_factory=NullReporter)
    previous: Sequence[g.Graph] = ()
    upgrade: frozenset[str] | bool = frozenset()

    def __post_init__(self) -> None:
        self.environment = target_environment(self.variant)
        self.python = Version(self.environment["python_full_version"])
        self.store = SdistStore(self.workdir / "sdists")
        self.upstream = UpstreamWheels(self.client, self.workdir / "upstream-wheels")
        # Stage 2's cache doubles as the store of our own wheels in source mode, so
        # what discovery builds is not built again.
        self.cache = BuildCache(self.workdir / "cache")
        self.builder = Builder(cache=self.cache, store=self.store, workdir=self.workdir)
        self._building: list[tuple[NormalizedName, Version]] = []
        self._own_keys: dict[tuple[NormalizedName, Version], BuildKey] = {}
        self.discoverer = Discoverer(
            self.workdir / "discovery",
            wheels=self._own_wheel if self.variant.discovery == "source" else self.upstream.fetch,
            timeout=self.variant.timeout,
        )
        self.packages: dict[tuple[NormalizedName, Version], _Package] = {}
        # Pins and constraints in any override shape every resolution of the lock,
        # install and build alike, like the collection's own.
        self.constraints = (
            *self.collection.constraints,
            *(
                c
                for o in sorted(self.project.overrides)
                for c in self.settings_for(o, None).constraints
            ),
        )
        self.preferred = self._preferences()

    # --- preferences --------------------------------------------------------

    def _preferences(self) -> dict[NormalizedName, Version]:
        """Versions to keep: the previous lock first, then the other variants'."""
        preferred: dict[NormalizedName, Version] = {}
        for graph in self.previous:
            for key in g.install_closure(graph):
                node = graph.nodes[key]
                name = canonicalize_name(node.name)
                if self.upgrade is True or (self.upgrade and name in self.upgrade):
                    continue
                preferred.setdefault(name, Version(node.version))
        return preferred

    def settings_for(self, name: str, version: Version | None) -> Settings:
        return effective_settings(
            variant=self.variant,
            override=self.project.overrides.get(canonicalize_name(name)),
            version=None if version is None else str(version),
        )

    # --- CandidateSource ----------------------------------------------------

    def versions(self, name: NormalizedName) -> list[VersionInfo]:
        files = self.client.project_files(name)
        settings = self.settings_for(name, None)
        by_version: dict[Version, list[DistFile]] = {}
        for f in files:
            if f.version is None or not self._python_ok(f):
                continue
            if settings.download_source and not settings.prebuilt:
                # The sdist comes from elsewhere: any release the index knows counts.
                by_version.setdefault(f.version, []).append(f)
            elif settings.prebuilt:
                if f.kind == "wheel" and self.upstream.wheel_file(name, f.version) is f:
                    by_version.setdefault(f.version, []).append(f)
            elif f.kind == "sdist":
                by_version.setdefault(f.version, []).append(f)
        return [
            VersionInfo(v, yanked=all(bool(f.yanked) for f in fs)) for v, fs in by_version.items()
        ]

    def _python_ok(self, f: DistFile) -> bool:
        if not f.requires_python:
            return True
        try:
            return SpecifierSet(f.requires_python).contains(self.python, prereleases=True)
        except InvalidSpecifier:
            return False

    def package(self, name: NormalizedName, version: Version) -> _Package:
        key = (name, version)
        if key not in self.packages:
            self.packages[key] = _Package(name, version, self.settings_for(name, version))
        return self.packages[key]

    def dependencies(self, name: NormalizedName, version: Version) -> list[str]:
        pkg = self.package(name, version)
        if pkg.requires is None:
            pkg.requires = self._requires(pkg)
        return pkg.requires

    def _requires(self, pkg: _Package) -> list[str]:
        files = [f for f in self.client.project_files(pkg.name) if f.version == pkg.version]
        if pkg.settings.prebuilt:
            wheel = self.upstream.wheel_file(pkg.name, pkg.version)
            if wheel is None:
                raise AffineurError(
                    "prebuilt, but no upstream wheel fits this interpreter",
                    package=pkg.name,
                    version=str(pkg.version),
                    stage="resolve",
                )
            path = self.upstream.fetch(pkg.name, pkg.version)
            pkg.wheel = g.FileRef(wheel.filename, wheel.sha256 or sha256_file(path))
            return wheel_requires_dist(path)
        self._fetch_sdist(pkg, files)
        assert pkg.sdist_path is not None
        pkg_info = read_pkg_info(pkg.sdist_path)
        if pkg_info is not None:
            static = static_requires_dist(pkg_info)
            if static is not None:
                return static
        for f in files:
            if f.kind == "wheel" and f.core_metadata is not False and not f.yanked:
                raw = self.client.core_metadata(f)
                if raw is not None:
                    self.reporter.detail(f"{pkg.name}=={pkg.version}: metadata from {f.filename}")
                    return requires_dist(raw)
        self.reporter.detail(f"{pkg.name}=={pkg.version}: metadata from the build backend")
        build = self._build_requirements(pkg)
        raw_meta = self.discoverer.prepare_metadata(
            pkg.name,
            pkg.version,
            pkg.sdist_path,
            pkg.sdist.sha256 if pkg.sdist else "",
            pkg.settings,
            build,
            self._resolve_build_pins(pkg),
            self._log(pkg),
        )
        if raw_meta is None:
            raise AffineurError(
                "no static metadata, no wheel metadata, and the backend has no "
                "prepare_metadata_for_build_wheel hook",
                package=pkg.name,
                version=str(pkg.version),
                stage="resolve",
            )
        return requires_dist(raw_meta)

    def _fetch_sdist(self, pkg: _Package, files: Sequence[DistFile]) -> None:
        if pkg.sdist_path is not None:
            return
        if pkg.settings.download_source:
            self._fetch_from_url(pkg, pkg.settings.download_source)
            return
        sdist = _preferred_sdist(files)
        if sdist is None:
            raise AffineurError(
                "no sdist on the index",
                package=pkg.name,
                version=str(pkg.version),
                stage="download",
                hint="mark it 'prebuilt: true' or give a 'download_source'",
            )
        path = self._download(sdist, sdist.filename)
        sha = sdist.sha256 or sha256_file(path)
        pkg.sdist_path = self.store.ensure(pkg.name, sdist.filename, sha, self.client)
        pkg.sdist = g.FileRef(sdist.filename, sha)

    def _fetch_from_url(self, pkg: _Package, template: str) -> None:
        source = UrlSource(self.client, source_url(template, pkg.name, str(pkg.version)), pkg.name)
        path = self._download(source.file(), source.url)
        # No index vouches for this file: its hash is recorded on first download,
        # and a later lock holds the file to the hash recorded then.
        sha = self._previous_hash(pkg, source.filename) or sha256_file(path)
        pkg.sdist_path = self.store.ensure(pkg.name, source.filename, sha, source)
        pkg.sdist = g.FileRef(source.filename, sha)

    def _download(self, file: DistFile, shown: str) -> Path:
        """Into the sdist store unless already there (its hash is checked by the caller)."""
        path = self.store.path(file.filename)
        if not path.exists():
            self.reporter.message(f"download {shown}")
            path.parent.mkdir(parents=True, exist_ok=True)
            self.client.download(file, path.parent)
        return path

    def _previous_hash(self, pkg: _Package, filename: str) -> str | None:
        key = g.node_key(pkg.name, str(pkg.version))
        for graph in self.previous:
            node = graph.nodes.get(key)
            if node is not None and node.sdist is not None and node.sdist.filename == filename:
                return node.sdist.sha256
        return None

    def _log(self, pkg: _Package) -> Path:
        path = self.workdir / "logs" / "lock" / self.variant.name / f"{pkg.name}-{pkg.version}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # --- build environments -------------------------------------------------

    def _build_request(self, pkg: _Package, requirements: Sequence[str]) -> ResolveRequest:
        preferred = dict(self.preferred)
        for (name, version), other in self.packages.items():
            if other.requires is not None:
                preferred.setdefault(name, version)
        return ResolveRequest(
            requirements=requirements,
            environment=self.environment,
            constraints=self.constraints,
            preferred=preferred,
            allow_prereleases=self.collection.prereleases,
            constraint_origin=f"{self.collection.file} and overrides/",
        )

    def _resolve_build_pins(self, pkg: _Package) -> ResolveFn:
        def run(requirements: Sequence[str]) -> Mapping[NormalizedName, Version]:
            if not requirements:
                return {}
            return resolve(self, self._build_request(pkg, requirements)).versions

        return run

    def _build_environment(self, pkg: _Package) -> Resolution:
        """The package's whole build environment, resolved once."""
        if pkg.env is None:
            pkg.env = resolve(self, self._build_request(pkg, self._build_requirements(pkg).all()))
        return pkg.env

    def _own_wheel(self, name: NormalizedName, version: Version) -> Path:
        """``discovery: source``: a wheel of name==version built here, never downloaded.

        Building it needs its own build environment built first, and so on down;
        a package met again on the way down is a build-time cycle, reported as
        its path before anything hangs.
        """
        if (name, version) in self._building:
            path = [f"{n}=={v}" for n, v in self._building[self._building.index((name, version)) :]]
            cycle = [*path, f"{name}=={version}"]
            raise AffineurError(
                "build-time cycle: " + " -> ".join(cycle), stage="cycle", hint=g.cycle_hint(cycle)
            )
        pkg = self.package(name, version)
        self.dependencies(name, version)
        if pkg.settings.prebuilt:
            return self.upstream.fetch(name, version)
        self._building.append((name, version))
        try:
            build = self._build_requirements(pkg)
            env = self._build_environment(pkg) if build.all() else None
            members = sorted(env.versions.items()) if env else []
            wheels = [self._own_wheel(n, v) for n, v in members]
            assert pkg.sdist is not None
            node = g.Node(
                name=name,
                version=str(version),
                sdist=pkg.sdist,
                edges=tuple(build_edges(build, env)) if env else (),
                build_env=tuple(g.node_key(n, str(v)) for n, v in members),
            )
            patches = find_patches(self.project.root, name, str(version), self.variant.name)
            key = compute_key(
                node,
                variant=self.variant.name,
                target=self.environment,
                inputs=BuildInputs(
                    pkg.settings.to_json(), patch_hashes(self.project.root, patches)
                ),
                env_keys=[self._own_keys[(n, v)] for n, v in members],
            )
            self._own_keys[(name, version)] = key
            if self.cache.get(key) is None:
                self.reporter.message(f"build {name}=={version} to discover with it (source mode)")
            request = BuildRequest(
                node=node,
                key=key,
                variant=self.variant.name,
                target=self.environment,
                settings=pkg.settings,
                patches=patches,
                env_wheels=wheels,
                network_isolation=self.variant.network_isolation,
            )
            # Its dependencies are not resolved here; stage 2 checks them against the lock.
            return self.builder.build(request, None).wheel
        finally:
            self._building.pop()

    def _build_requirements(self, pkg: _Package) -> BuildRequirements:
        if pkg.build is None:
            assert pkg.sdist_path is not None and pkg.sdist is not None
            self.reporter.message(f"discover build requirements of {pkg.name}=={pkg.version}")
            pkg.build = self.discoverer.requirements(
                pkg.name,
                pkg.version,
                pkg.sdist_path,
                pkg.sdist.sha256,
                pkg.settings,
                self._resolve_build_pins(pkg),
                self._log(pkg),
            )
        return pkg.build

    # --- the whole lock -----------------------------------------------------

    def run(self) -> g.Graph:
        self.reporter.message(
            f"lock {self.collection.name} for {self.variant.name}: resolving "
            f"{', '.join(self.collection.requirements)}"
        )
        install = resolve(
            self,
            ResolveRequest(
                requirements=self.collection.requirements,
                environment=self.environment,
                constraints=self.constraints,
                preferred=self.preferred,
                allow_prereleases=self.collection.prereleases,
                constraint_origin=f"{self.collection.file} and overrides/",
            ),
        )
        nodes: dict[g.NodeKey, g.Node] = {}
        toplevel = tuple(self._edges(install, None, "toplevel"))
        queue: list[g.NodeKey] = []
        self._add_nodes(install, nodes, queue)
        while queue:
            key = queue.pop(0)
            node = nodes[key]
            if node.prebuilt:
                continue
            pkg = self.package(canonicalize_name(node.name), Version(node.version))
            build = self._build_requirements(pkg)
            requirements = build.all()
            if not requirements:
                nodes[key] = replace(node, build_backend=build.build_backend_name)
                continue
            env = self._build_environment(pkg)
            self._add_nodes(env, nodes, queue)
            nodes[key] = replace(
                node,
                edges=tuple(sorted({*node.edges, *build_edges(build, env)})),
                build_env=tuple(sorted(g.node_key(n, str(v)) for n, v in env.versions.items())),
                build_backend=build.build_backend_name,
            )
        cycle = g.find_build_cycle(nodes)
        if cycle:
            raise AffineurError(
                "build-time cycle: " + " -> ".join(cycle),
                stage="cycle",
                hint=g.cycle_hint(cycle),
            )
        self.reporter.message(
            f"locked {self.collection.name} for {self.variant.name}: {len(nodes)} packages, "
            f"{len(g.install_closure(g.Graph('', '', '', {}, toplevel, nodes)))} installed"
        )
        return g.Graph(
            collection=self.collection.name,
            variant=self.variant.name,
            input_hash=input_hash(self.project, self.collection, self.variant),
            target=self.environment,
            toplevel=toplevel,
            nodes=nodes,
            discovery=self.variant.discovery,
        )

    def _edges(
        self, res: Resolution, parent: NormalizedName | None, req_type: g.ReqType
    ) -> list[g.Edge]:
        return [
            g.Edge(g.node_key(d.name, str(d.version)), req_type, d.req)
            for d in res.requirements_of(parent)
        ]

    def _add_nodes(
        self, res: Resolution, nodes: dict[g.NodeKey, g.Node], queue: list[g.NodeKey]
    ) -> None:
        for name, version in sorted(res.versions.items()):
            key = g.node_key(name, str(version))
            edges = self._edges(res, name, "install")
            if key in nodes:
                old = nodes[key]
                nodes[key] = replace(old, edges=tuple(sorted({*old.edges, *edges})))
                continue
            pkg = self.package(name, version)
            self.dependencies(name, version)  # fills sdist/wheel refs
            nodes[key] = g.Node(
                name=name,
                version=str(version),
                sdist=pkg.sdist,
                wheel=pkg.wheel,
                prebuilt=pkg.settings.prebuilt,
                edges=tuple(sorted(edges)),
            )
            queue.append(key)


def previous_locks(project: Project, collection: Collection, variant: Variant) -> list[g.Graph]:
    """This variant's own previous lock first, then the collection's other variants'."""
    graphs = []
    for name in [variant.name, *(v for v in collection.variants if v != variant.name)]:
        found = read_lock(LockPaths.of(project.root, collection.name, name).graph)
        if found is not None:
            graphs.append(found)
    return graphs


def stale_locks(project: Project) -> list[tuple[Collection, Variant]]:
    return [
        (c, project.variants[v])
        for c in project.collections.values()
        for v in c.variants
        if not lock_is_fresh(project, c, project.variants[v])
    ]


def lock(
    project: Project,
    collection: Collection,
    variant: Variant,
    *,
    client: IndexClient,
    workdir: Path,
    reporter: Reporter | None = None,
    upgrade: frozenset[str] | bool = frozenset(),
) -> LockPaths:
    """Lock one collection for one variant and write it; the entry point for doit and the CLI."""
    paths = LockPaths.of(project.root, collection.name, variant.name)
    locker = Locker(
        project,
        collection,
        variant,
        client,
        workdir,
        reporter=reporter or NullReporter(),
        previous=previous_locks(project, collection, variant),
        upgrade=upgrade,
    )
    write_lock(locker.run(), paths)
    return paths
