"""The effective build settings of one package, for one variant and version.

Pure functions over already-validated config: no file system, no environment
lookups. The result's :meth:`Settings.to_json` is part of the build key, so any
change to what a package is built with changes its key and rebuilds it.

Layers, lowest first: built-in defaults, the variant's ``defaults``, the
variant's own ``env``/``timeout``/``changelog``, the package file's top level,
its ``variants.<variant>`` block, then each ``versions.<specifier>`` block that
contains the version, in file order. Mappings merge key by key, lists
concatenate, scalars replace.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from affineur.config._models import PackageOverride, Variant
from affineur.config._schema import did_you_mean
from affineur.errors import AffineurError

__all__ = [
    "BUILD_ONLY_FIELDS",
    "DEFAULT_BUILD_TIMEOUT",
    "BuildRequiresOverride",
    "Settings",
    "effective_settings",
    "expand_env",
    "expand_template",
    "lock_meaning",
    "source_env",
]

BUILD_ONLY_FIELDS = frozenset({"env", "resources", "changelog", "timeout"})
"""Settings that change how a package is built but never what is locked.

They go into build keys, not into a lock's input hash. Discovery hooks do see
``env``, but a hook whose answer depends on a variable is caught at build time
by the drift check, so editing a variable never costs a networked re-lock.
"""


# A build with no ``timeout`` of its own gets this many seconds for all its hook
# calls together: long enough for the biggest C++ builds on a small machine,
# short enough that a hung build does not hold a CI runner for a day.
DEFAULT_BUILD_TIMEOUT = 4 * 3600.0


@dataclass(frozen=True)
class BuildRequiresOverride:
    """Edits to the discovered build requirements: remove names, replace, then add."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    replace: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def to_json(self) -> dict[str, Any]:
        return {
            "add": list(self.add),
            "remove": list(self.remove),
            "replace": dict(sorted(self.replace.items())),
        }


@dataclass(frozen=True)
class Settings:
    """What one package is built with; ``env`` values are still unexpanded templates."""

    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    config_settings: Mapping[str, str | tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    build_dir: str | None = None
    build_requires: BuildRequiresOverride = field(default_factory=BuildRequiresOverride)
    constraints: tuple[str, ...] = ()
    prebuilt: bool = False
    download_source: str | None = None
    resources: Mapping[str, float | bool] = field(default_factory=lambda: MappingProxyType({}))
    changelog: tuple[str, ...] = ()
    timeout: float | None = None
    pass_env: tuple[str, ...] = ()
    """Parent variables (names or ``PREFIX_*``) passed to the build beyond the built-in list."""
    max_unpacked_mb: float | None = None
    max_compression_ratio: float | None = None
    """Limits on unpacking the sdist (None: the defaults of ``pep517.UnpackLimits``)."""
    git: Mapping[str, str] | None = None
    """``{url, ref}``: the source is this repository at this ref, not an sdist (templates)."""
    plugin: str | None = None
    """The ``affineur.hooks`` entry point that fetches, prepares or builds this package."""

    def to_json(self) -> dict[str, Any]:
        """A canonical, JSON-able form: sorted keys, lists as lists, nothing left out.

        Mapping keys are sorted because their order carries no meaning; list
        order is kept because it can (changelog, constraints as the user wrote them).
        """
        return {
            "build_dir": self.build_dir,
            "build_requires": self.build_requires.to_json(),
            "changelog": list(self.changelog),
            "config_settings": {
                k: v if isinstance(v, str) else list(v)
                for k, v in sorted(self.config_settings.items())
            },
            "constraints": list(self.constraints),
            "download_source": self.download_source,
            "env": dict(sorted(self.env.items())),
            "prebuilt": self.prebuilt,
            "resources": dict(sorted(self.resources.items())),
            "timeout": self.timeout,
            # Only when set, so adding the setting changed no existing build key.
            **({"pass_env": sorted(set(self.pass_env))} if self.pass_env else {}),
            **{
                key: value
                for key, value in (
                    ("max_unpacked_mb", self.max_unpacked_mb),
                    ("max_compression_ratio", self.max_compression_ratio),
                )
                if value is not None
            },
            **({"git": dict(sorted(self.git.items()))} if self.git else {}),
            **({"plugin": self.plugin} if self.plugin else {}),
        }


def effective_settings(
    *, variant: Variant, override: PackageOverride | None, version: str | None
) -> Settings:
    """Merge every layer that applies to this package, variant and version.

    With ``version=None`` (a package not yet resolved) only the layers that do
    not depend on the version apply: no ``versions`` blocks, no changelog entries
    of the package.
    """
    parsed = _parse_version(version, override) if version is not None else None
    raw = override.raw if override is not None else {}
    layers: list[Mapping[str, Any]] = [
        variant.defaults,
        {"env": variant.env, "timeout": variant.timeout, "pass_env": variant.pass_env},
        raw,
        raw.get("variants", {}).get(variant.name, {}),
    ]
    if parsed is not None:
        layers += [
            block
            for spec, block in raw.get("versions", {}).items()
            if SpecifierSet(spec).contains(parsed, prereleases=True)
        ]
    merged = _Merged()
    for layer in layers:
        merged.apply(layer)
    changelog = [*variant.changelog]
    if parsed is not None:
        changelog += _changelog_for(parsed, layers)
    return merged.settings(tuple(changelog))


def source_env(settings: Settings, name: str, version: str) -> dict[str, str]:
    """Variables a package's source needs from where it came from.

    An archive made from git has no ``.git``: setuptools-scm (and hatch-vcs,
    which uses it) could not find the version it would have read from the tag,
    so it is told the version the lock gives the package. The generic names
    too: hatch-vcs does not tell setuptools-scm the distribution's name, so the
    per-distribution one alone is not seen; the hooks build only this package.
    """
    if not settings.git:
        return {}
    dist = re.sub(r"[-_.]+", "_", name).upper()
    return {
        f"SETUPTOOLS_SCM_PRETEND_VERSION_FOR_{dist}": version,
        "SETUPTOOLS_SCM_PRETEND_VERSION": version,
        "VCS_VERSIONING_PRETEND_VERSION": version,
    }


def lock_meaning(raw: Mapping[str, Any], variant: str | None = None) -> dict[str, Any]:
    """The part of one block of raw settings that can change a lock, as plain data.

    ``raw`` is an override file (then only the ``variants`` block of ``variant``
    counts) or a variant's ``defaults``. Build-only fields drop out, and so does a
    block left empty, so adding ``resources`` to an override keeps the lock
    fresh. ``versions`` blocks stay in file order: a later one wins.
    """
    out: dict[str, Any] = {
        k: _plain(v)
        for k, v in raw.items()
        if k not in BUILD_ONLY_FIELDS and k not in ("variants", "versions")
    }
    block = raw.get("variants", {}).get(variant) if variant is not None else None
    if block and (narrowed := lock_meaning(block)):
        out["variants"] = {variant: narrowed}
    versions = [
        [str(SpecifierSet(spec)), narrowed]
        for spec, block in raw.get("versions", {}).items()
        if (narrowed := lock_meaning(block))
    ]
    if versions:
        out["versions"] = versions
    return out


def _plain(value: Any) -> Any:
    """Frozen config values (read-only mappings, tuples) as JSON-able data."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _parse_version(version: str, override: PackageOverride | None) -> Version:
    try:
        return Version(version)
    except InvalidVersion as exc:
        raise AffineurError(
            f"version {version!r} is not a PEP 440 version",
            package=override.name if override else None,
            version=version,
            stage="config",
        ) from exc


def _changelog_for(version: Version, layers: Iterable[Mapping[str, Any]]) -> list[str]:
    """Entries written for exactly this version (``1.2`` and ``1.2.0`` are the same)."""
    entries: list[str] = []
    for layer in layers:
        for key, texts in layer.get("changelog", {}).items():
            try:
                same = Version(key) == version
            except InvalidVersion:
                same = False  # never matches; versions of a package are PEP 440
            if same:
                entries += texts
    return entries


class _Merged:
    """Accumulates layers of raw settings; the mutable half of a pure merge."""

    def __init__(self) -> None:
        self.env: dict[str, str] = {}
        self.config_settings: dict[str, str | tuple[str, ...]] = {}
        self.resources: dict[str, float | bool] = {}
        self.replace: dict[str, str] = {}
        self.add: list[str] = []
        self.remove: list[str] = []
        self.constraints: list[str] = []
        self.pass_env: list[str] = []
        self.scalars: dict[str, Any] = {}

    def apply(self, layer: Mapping[str, Any]) -> None:
        self.env.update(layer.get("env", {}))
        for key, value in layer.get("config_settings", {}).items():
            self.config_settings[key] = value if isinstance(value, str) else tuple(value)
        for key, amount in layer.get("resources", {}).items():
            self.resources[key] = amount if isinstance(amount, bool) else float(amount)
        build_requires = layer.get("build_requires", {})
        self.add += build_requires.get("add", ())
        self.remove += build_requires.get("remove", ())
        self.replace.update(build_requires.get("replace", {}))
        self.constraints += layer.get("constraints", ())
        self.pass_env += layer.get("pass_env", ())
        for key in (
            "build_dir",
            "prebuilt",
            "download_source",
            "timeout",
            "max_unpacked_mb",
            "max_compression_ratio",
            "git",
            "plugin",
        ):
            if layer.get(key) is not None:
                self.scalars[key] = layer[key]

    def settings(self, changelog: tuple[str, ...]) -> Settings:
        timeout = self.scalars.get("timeout")
        return Settings(
            env=MappingProxyType(dict(self.env)),
            config_settings=MappingProxyType(dict(self.config_settings)),
            build_dir=self.scalars.get("build_dir"),
            build_requires=BuildRequiresOverride(
                add=tuple(self.add),
                remove=tuple(self.remove),
                replace=MappingProxyType(dict(self.replace)),
            ),
            constraints=tuple(self.constraints),
            prebuilt=bool(self.scalars.get("prebuilt", False)),
            download_source=self.scalars.get("download_source"),
            resources=MappingProxyType(dict(self.resources)),
            changelog=changelog,
            timeout=float(timeout) if timeout is not None else None,
            pass_env=tuple(dict.fromkeys(self.pass_env)),
            max_unpacked_mb=self.scalars.get("max_unpacked_mb"),
            max_compression_ratio=self.scalars.get("max_compression_ratio"),
            git=MappingProxyType(dict(self.scalars["git"])) if "git" in self.scalars else None,
            plugin=self.scalars.get("plugin"),
        )


_TEMPLATE = re.compile(r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<other>.?))")


def expand_template(
    template: str, variables: Mapping[str, str], *, key_path: Sequence[str | int] = ()
) -> str:
    """Substitute ``${NAME}`` from ``variables``; ``$$`` is a literal ``$``.

    Deliberately not a shell: no command substitution, no defaults, no bare
    ``$NAME`` (it is ambiguous next to other text, and a typo there would pass
    silently). An unknown name is an error rather than an empty string, because
    an empty ``CFLAGS`` or path builds something, just not what was asked.
    """

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced")
        if name is None:
            raise AffineurError(
                f"invalid '$' in {template!r}",
                hint="write ${NAME} for a variable and $$ for a literal '$'",
                key_path=key_path,
                stage="config",
            )
        if name not in variables:
            raise AffineurError(
                f"unknown variable ${{{name}}} in {template!r}",
                hint=did_you_mean(name, variables),
                key_path=key_path,
                stage="config",
            )
        return variables[name]

    return _TEMPLATE.sub(substitute, template)


def expand_env(
    env: Mapping[str, str], *, version: str, name: str, base_env: Mapping[str, str]
) -> dict[str, str]:
    """Expand every value of ``env``; a value may use any other key of ``env``.

    ``${version}`` and ``${name}`` are the package's; other names come from the
    other keys of ``env`` (expanded first, whatever their order: the variant's and
    the package's env are merged before expansion, so file order means nothing),
    then ``base_env``. A key that names itself (``PATH: "/opt/bin:${PATH}"``)
    extends the base value rather than looping.
    """
    pending = dict(env)
    expanded: dict[str, str] = {}
    while pending:
        ready = [
            key
            for key, template in pending.items()
            if not any(ref != key and ref in pending for ref in _references(template))
        ]
        if not ready:
            loop = ", ".join(sorted(pending))
            raise AffineurError(
                f"env values refer to each other in a loop: {loop}",
                key_path=("env",),
                package=name,
                version=version,
            )
        for key in ready:
            variables = {**base_env, **expanded, "version": version, "name": name}
            try:
                expanded[key] = expand_template(pending.pop(key), variables, key_path=("env", key))
            except AffineurError as exc:
                raise dataclasses.replace(exc, package=name, version=version) from None
    return {key: expanded[key] for key in env}


def _references(template: str) -> set[str]:
    return set(re.findall(r"\$\{([^}]*)\}", template.replace("$$", "")))
