"""Site plugins: replace how one package's source is fetched, prepared or built.

A site registers an object under the ``affineur.hooks`` entry point group of
its own distribution, and an override chooses it by name for one package::

    # pyproject.toml of the site's plugin distribution
    [project.entry-points."affineur.hooks"]
    vendor-js = "mysite.affineur:VendorJs"

    # overrides/mypackage.yaml
    plugin: vendor-js

The object (or the class, instantiated without arguments) has up to three
methods, one per step, each given a request whose ``default()`` does what
affineur does without a plugin; a method it lacks is that default.
:class:`DefaultHooks` is a base class to inherit from. Plugins are site code:
they run in affineur's own process with its rights, like ``dodo.py``; the PEP
517 hooks that ``default()`` runs stay in the build sandbox. An error a plugin
raises is reported with the plugin's name and the step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from affineur.errors import AffineurError, Stage

__all__ = [
    "ENTRY_POINT_GROUP",
    "BuildRequest",
    "DefaultHooks",
    "FetchRequest",
    "PluginHooks",
    "PrepareRequest",
    "SourceHooks",
    "load_hooks",
    "plugin_names",
]

ENTRY_POINT_GROUP = "affineur.hooks"


@dataclass(frozen=True)
class FetchRequest:
    """Get the package's source archive into ``dest`` and return its path.

    Runs in the network stage (``doit lock``), and again wherever the archive
    is missing from the store; the result must hash the same every time, since
    the lock holds it to the sha256 recorded when it was first fetched. Its file
    name must be an sdist name of this package and version
    (``<name>-<version>.tar.gz``). ``default()`` fetches it as affineur would
    (from the index, ``download_source`` or ``git``) and returns its path.
    """

    name: str
    version: str
    dest: Path
    default: Callable[[], Path]


@dataclass(frozen=True)
class PrepareRequest:
    """Change the unpacked source tree in place before it is built (after patches).

    ``source`` is the top of the unpacked archive (``build_dir`` is below it).
    Everything a build depends on must come from the locked archive, the
    patches and the plugin itself: the build stage has no network.
    """

    name: str
    version: str
    source: Path
    log: Path


@dataclass(frozen=True)
class BuildRequest:
    """Make the wheel in ``out`` and return its path.

    ``default()`` runs the backend's ``build_wheel`` hook in the build sandbox
    and returns the wheel. Whatever the plugin returns is verified against the
    lock (name, version, tags, dependencies) like any built wheel. ``env`` is
    the environment the build hooks get.
    """

    name: str
    version: str
    source: Path
    out: Path
    env: Mapping[str, str]
    log: Path
    default: Callable[[], Path]


class SourceHooks(Protocol):
    """What a plugin may provide; each method is optional (see :class:`PluginHooks`)."""

    def fetch(self, request: FetchRequest) -> Path: ...

    def prepare(self, request: PrepareRequest) -> None: ...

    def build(self, request: BuildRequest) -> Path: ...


class DefaultHooks:
    """Today's behaviour, step by step: inherit from it and override one method."""

    def fetch(self, request: FetchRequest) -> Path:
        return request.default()

    def prepare(self, request: PrepareRequest) -> None:
        return None

    def build(self, request: BuildRequest) -> Path:
        return request.default()


class PluginHooks:
    """A loaded plugin under its name: missing steps are defaults, errors carry the name."""

    def __init__(self, name: str, plugin: object, origin: str = "") -> None:
        self.name = name
        self.plugin = plugin
        self.origin = origin
        """The distribution and version that provides it: part of the build key."""

    def fetch(self, request: FetchRequest) -> Path:
        return self._path(self._call("fetch", request, "download"), "fetch", request, "download")

    def prepare(self, request: PrepareRequest) -> None:
        self._call("prepare", request, "patch")

    def build(self, request: BuildRequest) -> Path:
        return self._path(self._call("build", request, "build"), "build", request, "build")

    def _path(
        self, result: object, step: str, request: FetchRequest | BuildRequest, stage: Stage
    ) -> Path:
        if not isinstance(result, Path):
            raise AffineurError(
                f"plugin {self.name}: {step} returned {type(result).__name__}, not a path",
                package=request.name,
                version=request.version,
                stage=stage,
                key_path=("plugin",),
            )
        return result

    def _call(
        self,
        step: str,
        request: FetchRequest | PrepareRequest | BuildRequest,
        stage: Stage,
    ) -> Any:
        method = getattr(self.plugin, step, None) or getattr(DefaultHooks(), step)
        # An error of affineur's own default step passes through as it is: it is
        # not the plugin's, and it already says where it comes from.
        from_default: list[BaseException] = []
        if isinstance(request, FetchRequest | BuildRequest):
            inner = request.default

            def guarded() -> Path:
                try:
                    return inner()
                except BaseException as exc:
                    from_default.append(exc)
                    raise

            request = dataclasses.replace(request, default=guarded)
        try:
            return method(request)
        except Exception as exc:
            if any(exc is seen for seen in from_default):
                raise
            raise self._error(exc, step, request, stage) from exc

    def _error(
        self,
        exc: Exception,
        step: str,
        request: FetchRequest | PrepareRequest | BuildRequest,
        stage: Stage,
    ) -> AffineurError:
        if isinstance(exc, AffineurError):
            return dataclasses.replace(
                exc,
                message=f"plugin {self.name}: {step}: {exc.message}",
                package=exc.package or request.name,
                version=exc.version or request.version,
            )
        return AffineurError(
            f"plugin {self.name}: {step} failed: {type(exc).__name__}: {exc}",
            package=request.name,
            version=request.version,
            stage=stage,
            key_path=("plugin",),
            hint=f"raised by the '{ENTRY_POINT_GROUP}' entry point {self.name!r}",
        )


def plugin_names() -> list[str]:
    """The names of every installed ``affineur.hooks`` entry point."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


@cache
def load_hooks(name: str) -> PluginHooks:
    """The plugin an override names; a name nothing installs is one clear error."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        installed = plugin_names()
        raise AffineurError(
            f"no '{ENTRY_POINT_GROUP}' plugin named {name!r} is installed",
            key_path=("plugin",),
            stage="config",
            hint=(
                f"installed: {', '.join(installed)}"
                if installed
                else "install the distribution that provides it into affineur's environment"
            ),
        )
    try:
        loaded = found[0].load()
        plugin = loaded() if isinstance(loaded, type) else loaded
    except Exception as exc:
        raise AffineurError(
            f"plugin {name}: cannot load {found[0].value}: {type(exc).__name__}: {exc}",
            key_path=("plugin",),
            stage="config",
        ) from exc
    dist = found[0].dist
    origin = f"{dist.name} {dist.version}" if dist is not None else found[0].value
    return PluginHooks(name, plugin, origin)
