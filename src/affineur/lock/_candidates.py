"""The resolver's candidate source over a :class:`LockIndex`, and the metadata chain.

Which versions of a project count depends on its settings: sdists normally, any
release when the sdist comes from a ``download_source`` URL, the upstream wheel
when it is ``prebuilt``, and for a ``git`` source the version its ref names or
the collection pins (the repository has no list of releases to choose from).
The dependencies of one version come from the cheapest source that can be
trusted, in order: the sdist's PKG-INFO when PEP 643 makes them static, the
index's core metadata of a wheel of the same version (PEP 658/714), and last
the build backend's ``prepare_metadata_for_build_wheel`` hook, which needs the
package's build requirements and so goes through the
:class:`MetadataHook`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol
from urllib.parse import unquote, urlsplit

from packaging.utils import NormalizedName
from packaging.version import Version

from affineur import graph as g
from affineur.config import Settings
from affineur.errors import AffineurError
from affineur.hooks import load_hooks
from affineur.index import DistFile, python_allows, redact_url, source_url
from affineur.lock._gitsource import git_location, git_versions
from affineur.lock._metadata import metadata_version, requires_dist, static_requires_dist
from affineur.lock._resolver import VersionInfo
from affineur.lock._sources import LocalSdist, LockIndex
from affineur.progress import MetadataFound, NullReporter, Reporter

__all__ = ["IndexCandidates", "MetadataHook", "NeedsHook", "Package", "SettingsFn"]

SettingsFn = Callable[[str, Version | None], Settings]
"""The effective settings of a package (``None``: before its version is known)."""


@dataclass
class Package:
    """What the lock learned about one name==version, filled in as it is needed."""

    name: NormalizedName
    version: Version
    settings: Settings
    sdist: LocalSdist | None = None
    wheel: g.FileRef | None = None
    requires: list[str] | None = None
    git: g.GitRef | None = None


class MetadataHook(Protocol):
    """The last resort of the metadata chain: ask the package's build backend."""

    def metadata(self, pkg: Package, source: IndexCandidates) -> bytes | None: ...


class NeedsHook(Exception):
    """A shadow source met a package whose metadata only its build backend has."""


class _NoHook:
    def metadata(self, pkg: Package, source: IndexCandidates) -> bytes | None:
        raise NeedsHook(f"{pkg.name}=={pkg.version}")


def _preferred_sdist(files: Iterable[DistFile]) -> DistFile | None:
    sdists = [f for f in files if f.kind == "sdist"]
    # .tar.gz is the standard sdist format (PEP 625); .zip only when it is all there is.
    sdists.sort(key=lambda f: (not f.filename.endswith(".tar.gz"), f.filename))
    return sdists[0] if sdists else None


class IndexCandidates:
    """A :class:`~affineur.lock._resolver.CandidateSource` that remembers what it learned.

    Every ``name==version`` it is asked about gets a :class:`Package`, kept for the
    whole lock, so each sdist is fetched and each metadata source asked at most once.
    """

    def __init__(
        self,
        index: LockIndex,
        *,
        settings_for: SettingsFn,
        python: Version,
        hook: MetadataHook,
        reporter: Reporter,
        previous: Sequence[g.Graph] = (),
        pins: Mapping[NormalizedName, Sequence[Version]] | None = None,
    ) -> None:
        """``pins``: the exact versions (``==``) the collection's requirements and
        constraints name, the only versions a git source whose ref is a template has."""
        self.index = index
        self.pins = dict(pins or {})
        self.settings_for = settings_for
        self.python = python
        self.hook = hook
        self.reporter = reporter
        self.previous = previous
        self.packages: dict[tuple[NormalizedName, Version], Package] = {}
        # The resolver asks for a name's versions at every round and backtrack;
        # the answer only depends on the index's files and the settings, fixed
        # for the length of a lock.
        self._versions: dict[NormalizedName, tuple[VersionInfo, ...]] = {}

    # --- CandidateSource ----------------------------------------------------

    def versions(self, name: NormalizedName) -> list[VersionInfo]:
        if name not in self._versions:
            self._versions[name] = tuple(self._find_versions(name))
        return list(self._versions[name])

    def _find_versions(self, name: NormalizedName) -> list[VersionInfo]:
        settings = self.settings_for(name, None)
        if settings.git and not settings.prebuilt:
            return [VersionInfo(v) for v in git_versions(name, settings.git, self.pins.get(name))]
        by_version: dict[Version, list[DistFile]] = {}
        for f in self.index.files(name):
            if f.version is None or not self._python_ok(f):
                continue
            if settings.download_source and not settings.prebuilt:
                # The sdist comes from elsewhere: any release the index knows counts.
                by_version.setdefault(f.version, []).append(f)
            elif settings.prebuilt:
                if f.kind == "wheel" and self.index.upstream_wheel(name, f.version) is f:
                    by_version.setdefault(f.version, []).append(f)
            elif f.kind == "sdist":
                by_version.setdefault(f.version, []).append(f)
        return [
            VersionInfo(v, yanked=all(bool(f.yanked) for f in fs)) for v, fs in by_version.items()
        ]

    def dependencies(self, name: NormalizedName, version: Version) -> list[str]:
        pkg = self.package(name, version)
        if pkg.requires is None:
            pkg.requires = self._requires(pkg)
        return pkg.requires

    # --- what the rest of the lock asks -------------------------------------

    def package(self, name: NormalizedName, version: Version) -> Package:
        key = (name, version)
        if key not in self.packages:
            self.packages[key] = Package(name, version, self.settings_for(name, version))
        return self.packages[key]

    def shadow(self) -> IndexCandidates:
        """A candidate source over the same index that learns on its own and runs no hook.

        For looking ahead from another thread: what it learns never reaches this
        source, so it cannot change what the lock decides. A package whose
        dependencies only a build backend could tell raises :class:`NeedsHook`.
        """
        return IndexCandidates(
            self.index,
            settings_for=self.settings_for,
            python=self.python,
            hook=_NoHook(),
            reporter=NullReporter(),
            previous=self.previous,
            pins=self.pins,
        )

    def pinned(self) -> dict[NormalizedName, Version]:
        """Versions already part of this lock (first seen first), to prefer elsewhere."""
        out: dict[NormalizedName, Version] = {}
        for (name, version), pkg in self.packages.items():
            if pkg.requires is not None:
                out.setdefault(name, version)
        return out

    # --- the metadata chain -------------------------------------------------

    def _python_ok(self, f: DistFile) -> bool:
        return python_allows(f.requires_python, self.python)

    def _requires(self, pkg: Package) -> list[str]:
        if pkg.settings.git and not pkg.settings.prebuilt:
            return self._git_requires(pkg)
        files = [f for f in self.index.files(pkg.name) if f.version == pkg.version]
        if pkg.settings.prebuilt:
            found = self.index.upstream_wheel(pkg.name, pkg.version)
            if found is None:
                raise AffineurError(
                    "prebuilt, but no upstream wheel fits this interpreter",
                    package=pkg.name,
                    version=str(pkg.version),
                    stage="resolve",
                )
            wheel = self.index.prebuilt_wheel(found)
            pkg.wheel = wheel.ref
            return list(wheel.requires_dist)
        sdist = self.sdist(pkg, files)
        if sdist.pkg_info is not None:
            static = static_requires_dist(sdist.pkg_info)
            if static is not None:
                return static
        for f in files:
            if f.kind == "wheel" and f.core_metadata is not False and not f.yanked:
                raw = self.index.core_metadata(f)
                if raw is not None:
                    self.reporter.report(
                        MetadataFound(str(pkg.name), str(pkg.version), "wheel", f.filename)
                    )
                    return requires_dist(raw)
        self.reporter.report(MetadataFound(str(pkg.name), str(pkg.version), "backend"))
        raw_meta = self.hook.metadata(pkg, self)
        if raw_meta is None:
            raise AffineurError(
                "no static metadata, no wheel metadata, and the backend has no "
                "prepare_metadata_for_build_wheel hook",
                package=pkg.name,
                version=str(pkg.version),
                stage="resolve",
            )
        return requires_dist(raw_meta)

    def _git_requires(self, pkg: Package) -> list[str]:
        """A git tree's dependencies come from its build backend, whose version must agree.

        An index wheel of the same version is no witness here: the commit need
        not be the release. And the backend's Version is the check that the ref
        really holds the version the lock gives it.
        """
        if isinstance(self.hook, _NoHook):
            raise NeedsHook(f"{pkg.name}=={pkg.version}")  # looking ahead: no fetch from git
        self.sdist(pkg)
        self.reporter.report(MetadataFound(str(pkg.name), str(pkg.version), "backend"))
        raw_meta = self.hook.metadata(pkg, self)
        if raw_meta is None:
            raise AffineurError(
                "a git source needs the backend's prepare_metadata_for_build_wheel hook "
                "to check its version",
                package=pkg.name,
                version=str(pkg.version),
                stage="resolve",
            )
        found = metadata_version(raw_meta)
        if found is None or found != pkg.version:
            where = f"{pkg.git.ref} ({pkg.git.commit[:12]})" if pkg.git else "the fetched source"
            raise AffineurError(
                f"the project at {where} says it is version {found}, not {pkg.version}",
                package=pkg.name,
                version=str(pkg.version),
                stage="resolve",
                key_path=("git", "ref"),
                hint="point the ref at the release, or pin the version the project declares",
            )
        return requires_dist(raw_meta)

    def sdist(self, pkg: Package, files: Sequence[DistFile] | None = None) -> LocalSdist:
        """The package's sdist on this machine, fetched on first use."""
        if pkg.sdist is not None:
            return pkg.sdist
        if isinstance(self.hook, _NoHook) and (pkg.settings.plugin or pkg.settings.git):
            # Looking ahead, in another thread: a clone or a site plugin's fetch runs
            # once, when the lock itself asks, never twice at the same time.
            raise NeedsHook(f"{pkg.name}=={pkg.version}")
        if pkg.settings.plugin:
            try:
                hooks = load_hooks(pkg.settings.plugin)
            except AffineurError as exc:
                raise dataclasses.replace(exc, package=pkg.name) from None

            def default() -> LocalSdist:
                return self._default_sdist(pkg, files)

            local = self.index.sdist_from_plugin(pkg.name, str(pkg.version), hooks, default)
            if local is not pkg.sdist:
                pkg.git = None  # the plugin's own archive: whatever default() fetched is not it
            pkg.sdist = local
            return local
        return self._default_sdist(pkg, files)

    def _default_sdist(self, pkg: Package, files: Sequence[DistFile] | None) -> LocalSdist:
        if pkg.sdist is not None:
            return pkg.sdist
        if pkg.settings.git and not pkg.settings.prebuilt:
            url, ref = git_location(pkg.settings.git, pkg.name, str(pkg.version))
            pkg.sdist, pkg.git = self.index.sdist_from_git(
                pkg.name, str(pkg.version), url, ref, self._recorded_git(pkg, url, ref)
            )
            return pkg.sdist
        if pkg.settings.download_source:
            url = source_url(pkg.settings.download_source, pkg.name, str(pkg.version))
            pkg.sdist = self.index.sdist_from_url(pkg.name, url, self._recorded_hash(pkg, url))
            return pkg.sdist
        if files is None:
            files = [f for f in self.index.files(pkg.name) if f.version == pkg.version]
        found = _preferred_sdist(files)
        if found is None:
            raise AffineurError(
                "no sdist on the index",
                package=pkg.name,
                version=str(pkg.version),
                stage="download",
                hint="mark it 'prebuilt: true' or give a 'download_source'",
            )
        pkg.sdist = self.index.sdist(found)
        return pkg.sdist

    def _recorded_git(self, pkg: Package, url: str, ref: str) -> tuple[g.GitRef, str] | None:
        """The commit and archive hash a previous lock recorded for this repository and ref."""
        key = g.node_key(pkg.name, str(pkg.version))
        for graph in self.previous:
            node = graph.nodes.get(key)
            if (
                node is not None
                and node.git is not None
                and node.sdist is not None
                and (node.git.url, node.git.ref) == (redact_url(url), ref)
            ):
                return node.git, node.sdist.sha256
        return None

    def _recorded_hash(self, pkg: Package, url: str) -> str | None:
        """The hash a previous lock recorded for this URL's file, if any."""
        filename = PurePosixPath(unquote(urlsplit(url).path)).name
        key = g.node_key(pkg.name, str(pkg.version))
        for graph in self.previous:
            node = graph.nodes.get(key)
            if node is not None and node.sdist is not None and node.sdist.filename == filename:
                return node.sdist.sha256
        return None
