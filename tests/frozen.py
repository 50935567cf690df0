"""A frozen package index for unit tests of the locker: JSON in, no network, no subprocess.

The index is ``{name: {version: release}}``; a release may say:

    requires        Requires-Dist (markers and extras as in core metadata)
    build           [build-system] requires (default: none, a self-hosting tool)
    backend         build-backend (default "frozen.backend")
    wheel_requires  what get_requires_for_build_wheel returns
    sdist_requires  what get_requires_for_build_sdist returns
    metadata        where Requires-Dist is found: "static" (PKG-INFO, the default),
                    "wheel" (the core metadata of an upstream wheel), "hook"
                    (prepare_metadata_for_build_wheel) or "none"
    wheel           an upstream wheel exists (default: only for metadata "wheel")
    sdist           an sdist exists (default true)
    requires_python, yanked

:class:`FrozenIndex` answers the locker's index interface and :class:`FrozenHooks`
its discovery hooks from that data; both log every call, so tests can check
what was asked and in which order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from affineur import graph as g
from affineur.config import Settings
from affineur.index import DistFile, make_file
from affineur.lock._candidates import SettingsFn
from affineur.lock._discovery import BuildRequirements, ResolveFn, WheelFn
from affineur.lock._locker import Locker, LockRequest, make_locker
from affineur.lock._policy import ResolvePolicy, Upgrade, previous_preferences
from affineur.lock._sources import LocalSdist, LocalWheel
from affineur.pep517 import override_requires

DATA = Path(__file__).parent / "data" / "indexes"

TARGET: dict[str, str] = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.0",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "python_full_version": "3.11.0",
    "python_version": "3.11",
    "sys_platform": "linux",
}

Release = Mapping[str, Any]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _metadata(name: str, version: str, requires: Sequence[str], *, dynamic: bool) -> bytes:
    lines = ["Metadata-Version: 2.2", f"Name: {name}", f"Version: {version}"]
    if dynamic:
        lines.append("Dynamic: Requires-Dist")
    else:
        lines += [f"Requires-Dist: {r}" for r in requires]
    return ("\n".join(lines) + "\n").encode()


class FrozenIndex:
    """The locker's :class:`~affineur.lock._sources.LockIndex`, answered from data."""

    def __init__(self, data: Mapping[str, Mapping[str, Release]]) -> None:
        self.releases: dict[NormalizedName, dict[Version, Release]] = {
            canonicalize_name(name): {Version(v): r for v, r in versions.items()}
            for name, versions in data.items()
        }
        self.calls: list[str] = []
        self._files: dict[NormalizedName, list[DistFile]] = {}

    @classmethod
    def load(cls, name: str) -> FrozenIndex:
        return cls(json.loads((DATA / f"{name}.json").read_text()))

    def release(self, name: str, version: Version | str) -> Release:
        return self.releases[canonicalize_name(name)][Version(str(version))]

    def files(self, name: NormalizedName) -> list[DistFile]:
        # The same objects every time, as a caching index client returns them.
        if name not in self._files:
            self._files[name] = self._make_files(name)
        return self._files[name]

    def _make_files(self, name: NormalizedName) -> list[DistFile]:
        if name not in self.releases:
            from affineur.errors import AffineurError

            raise AffineurError("no such project on the index", package=name, stage="index")
        out = []
        for version, release in self.releases[name].items():
            common: dict[str, Any] = {
                "requires_python": release.get("requires_python"),
                "yanked": release.get("yanked", False),
            }
            stem = f"{name.replace('-', '_')}-{version}"
            if release.get("sdist", True):
                f = make_file(name, f"{stem}.tar.gz", f"frozen:{stem}.tar.gz", **common)
                assert f is not None
                out.append(f)
            if release.get("wheel", release.get("metadata") == "wheel"):
                f = make_file(
                    name,
                    f"{stem}-py3-none-any.whl",
                    f"frozen:{stem}.whl",
                    sha256=_sha(f"{stem}.whl"),
                    core_metadata=True,
                    **common,
                )
                assert f is not None
                out.append(f)
        return out

    def core_metadata(self, file: DistFile) -> bytes | None:
        assert file.version is not None
        self.calls.append(f"core-metadata {file.filename}")
        release = self.release(file.project, file.version)
        return _metadata(
            file.project, str(file.version), release.get("requires", ()), dynamic=False
        )

    def upstream_wheel(self, name: NormalizedName, version: Version) -> DistFile | None:
        wheels = [f for f in self.files(name) if f.kind == "wheel" and f.version == version]
        return wheels[0] if wheels and not wheels[0].yanked else None

    def prebuilt_wheel(self, file: DistFile) -> LocalWheel:
        assert file.version is not None and file.sha256 is not None
        self.calls.append(f"prebuilt {file.filename}")
        release = self.release(file.project, file.version)
        return LocalWheel(g.FileRef(file.filename, file.sha256), tuple(release.get("requires", ())))

    def discovery_wheel(self, name: NormalizedName, version: Version) -> Path:
        self.calls.append(f"discovery-wheel {name}=={version}")
        return Path(f"/frozen/upstream/{name}-{version}.whl")

    def sdist(self, file: DistFile) -> LocalSdist:
        assert file.version is not None
        self.calls.append(f"sdist {file.filename}")
        release = self.release(file.project, file.version)
        pkg_info = _metadata(
            file.project,
            str(file.version),
            release.get("requires", ()),
            dynamic=release.get("metadata", "static") != "static",
        )
        ref = g.FileRef(file.filename, _sha(file.filename))
        return LocalSdist(ref, Path(f"/frozen/sdists/{file.filename}"), pkg_info)

    def sdist_from_url(self, name: NormalizedName, url: str, sha256: str | None) -> LocalSdist:
        self.calls.append(f"url {url}")
        filename = url.rsplit("/", 1)[-1]
        ref = g.FileRef(filename, sha256 or _sha(url))
        return LocalSdist(ref, Path(f"/frozen/sdists/{filename}"), None)


class FrozenHooks:
    """The locker's :class:`~affineur.lock._buildenv.BuildHooks`, answered from data.

    Like the real discoverer, it resolves the build-system requirements and asks
    for their wheels before "running" a hook, so source mode is exercised too.
    """

    def __init__(self, index: FrozenIndex) -> None:
        self.index = index
        self.calls: list[str] = []

    def _environment(
        self, requirements: Sequence[str], resolve: ResolveFn, wheels: WheelFn
    ) -> None:
        for name, version in sorted(resolve(requirements).items()):
            wheels(name, version)

    def requirements(
        self,
        name: NormalizedName,
        version: Version,
        sdist: Path,
        sha256: str,
        settings: Settings,
        resolve: ResolveFn,
        wheels: WheelFn,
    ) -> BuildRequirements:
        self.calls.append(f"requirements {name}=={version}")
        release = self.index.release(name, version)
        build_system = override_requires(release.get("build", ()), settings.build_requires)
        self._environment(build_system, resolve, wheels)
        return BuildRequirements(
            build_backend_name=release.get("backend", "frozen.backend"),
            build_system=build_system,
            build_backend=tuple(release.get("wheel_requires", ())),
            build_sdist=tuple(release.get("sdist_requires", ())),
        )

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
    ) -> bytes | None:
        self.calls.append(f"prepare-metadata {name}=={version}")
        release = self.index.release(name, version)
        self._environment(
            [*requirements.build_system, *requirements.build_backend], resolve, wheels
        )
        if release.get("metadata") != "hook":
            return None
        return _metadata(name, str(version), release.get("requires", ()), dynamic=False)


class RecordingBuilds:
    """``discovery: source`` builds, recorded in the order they were asked for."""

    def __init__(self) -> None:
        self.built: list[str] = []
        self.envs: dict[str, list[str]] = {}

    def wheel(
        self, node: g.Node, env: Sequence[tuple[g.Node, Path]], target: Mapping[str, str]
    ) -> Path:
        for member, wheel in env:
            assert member.prebuilt or member.key in self.built, f"{member.key} not built first"
            assert wheel.name.endswith(".whl")
        self.built.append(node.key)
        self.envs[node.key] = [m.key for m, _ in env]
        return Path(f"/frozen/built/{node.key}.whl")


def settings_table(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> SettingsFn:
    """A settings function: ``{"name": {"prebuilt": True, ...}}`` per package, else defaults."""
    table = {canonicalize_name(k): v for k, v in (overrides or {}).items()}

    def settings_for(name: str, version: Version | None) -> Settings:
        return Settings(**table.get(canonicalize_name(name), {}))

    return settings_for


def frozen_locker(
    index: FrozenIndex,
    requirements: Sequence[str],
    *,
    constraints: Sequence[str] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    previous: Sequence[g.Graph] = (),
    upgrade: Upgrade = frozenset(),
    discovery: str = "wheels",
    builds: RecordingBuilds | None = None,
    target: Mapping[str, str] = TARGET,
    lookahead: int = 0,
) -> tuple[Locker, FrozenHooks]:
    hooks = FrozenHooks(index)
    request = LockRequest(
        collection="demo",
        variant="cpu",
        requirements=requirements,
        policy=ResolvePolicy(
            environment=g.marker_environment(target),
            constraints=constraints,
            preferences=previous_preferences(previous, upgrade),
            constraint_origin="collections/demo.toml",
        ),
        target=target,
        input_hash=_sha("inputs"),
        discovery=discovery,
    )
    locker = make_locker(
        request,
        index=index,
        hooks=hooks,
        settings_for=settings_table(overrides),
        previous=previous,
        builds=builds,
        lookahead=lookahead,
    )
    return locker, hooks


def lock_frozen(index: FrozenIndex, requirements: Sequence[str], **kw: Any) -> g.Graph:
    locker, _hooks = frozen_locker(index, requirements, **kw)
    return locker.run()
