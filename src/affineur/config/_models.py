"""The project's config as typed, immutable models: collections, variants, overrides.

Every stage reads these and none writes them, so they are frozen dataclasses
over read-only mappings (:func:`freeze`); how they are read and checked lives in
:mod:`affineur.config._project`. A variant's target marker environment is here
too, since it is what a lock records and every stage compares against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from packaging.markers import default_environment
from packaging.utils import canonicalize_name

__all__ = [
    "TARGET_MARKERS",
    "Collection",
    "Discovery",
    "Evidence",
    "PackageOverride",
    "Project",
    "SandboxChoice",
    "SandboxSetting",
    "Variant",
    "freeze",
    "target_environment",
]

Discovery = Literal["wheels", "source"]


@dataclass(frozen=True)
class Collection:
    """``collections/<name>.toml``: top-level requirements built for some variants."""

    name: str
    description: str
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    variants: tuple[str, ...]
    prereleases: bool
    file: Path


SandboxChoice = Literal["auto", "bubblewrap", "unshare", "none"]


@dataclass(frozen=True)
class SandboxSetting:
    """A variant's ``sandbox``: which implementation, and what it adds to a build's view."""

    kind: SandboxChoice = "auto"
    read_only: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()

    @property
    def relaxed(self) -> bool:
        return self.kind == "none" or bool(self.read_only or self.writable)


@dataclass(frozen=True)
class Evidence:
    """Site settings for the evidence each build carries (``evidence:`` in a variant).

    ``supplier`` and ``namespace`` go into every wheel's SBOM, so they are build
    inputs; ``builder_id`` names the builder in provenance statements, which sit
    beside the wheel and so change no wheel byte.
    """

    supplier: str | None = None
    supplier_url: str | None = None
    namespace: str | None = None
    builder_id: str | None = None


@dataclass(frozen=True)
class Variant:
    """``variants/<name>.yaml`` with ``extends`` already applied.

    ``defaults`` holds raw package settings (the schema of an override file
    without ``variants``/``versions``); :mod:`affineur.config._settings` merges them.
    """

    name: str
    description: str
    python: str
    platform: Mapping[str, str]
    indexes: tuple[str, ...]
    discovery: Discovery
    env: Mapping[str, str]
    resources: Mapping[str, float]
    defaults: Mapping[str, Any]
    changelog: tuple[str, ...]
    timeout: float | None
    network_isolation: bool
    file: Path
    remote_cache: Mapping[str, Any] | None = None
    """The validated ``remote_cache`` mapping (see ``effective_remote_cache``)."""
    sandbox: SandboxSetting = field(default_factory=SandboxSetting)
    """The filesystem sandbox of every hook call (see ``pep517._sandbox``)."""
    executor: str | None = None
    """``local`` or ``dask://host:port``; see :func:`affineur.config.effective_executor`."""
    files: tuple[Path, ...] = ()
    """This variant's file and those of every variant it extends, nearest first."""
    pass_env: tuple[str, ...] = ()
    """Parent variables passed to builds beyond the built-in list (see pep517 isolation)."""
    evidence: Evidence = field(default_factory=Evidence)
    interpreter: str | None = None
    """The Python that builds it, by path; None: a ``python`` X.Y found on this machine."""
    crates_index: str | None = None
    """The crates registry Rust sdists' crates are vendored from (None: cargo's default)."""


@dataclass(frozen=True)
class PackageOverride:
    """``overrides/<name>.yaml``; ``name`` is canonical, ``raw`` is the validated file."""

    name: str
    raw: Mapping[str, Any]
    file: Path


@dataclass(frozen=True)
class Project:
    root: Path
    collections: Mapping[str, Collection] = field(default_factory=dict)
    variants: Mapping[str, Variant] = field(default_factory=dict)
    overrides: Mapping[str, PackageOverride] = field(default_factory=dict)
    """Keyed by canonical package name."""

    def override_for(self, package: str) -> PackageOverride | None:
        return self.overrides.get(canonicalize_name(package))


TARGET_MARKERS = (
    "implementation_name",
    "implementation_version",
    "os_name",
    "platform_machine",
    "platform_python_implementation",
    "platform_system",
    "python_full_version",
    "python_version",
    "sys_platform",
)
"""The PEP 508 values that decide a lock: which releases, dependencies and wheel
tags fit. ``platform_release`` and ``platform_version`` (the kernel) are left out:
they describe the locking host, and a lock must not change with it."""


def target_environment(variant: Variant, host: Mapping[str, str] | None = None) -> dict[str, str]:
    """The marker values the variant's packages are resolved for, as the lock records them.

    What the variant declares (``python``, ``platform``) wins; the rest defaults
    to the running machine's values (``host``, the running interpreter's marker
    environment unless given), but only the values in :data:`TARGET_MARKERS`, so
    two machines of the same kind give the same target. A Python given as ``X.Y``
    stands for the whole series: its full version is ``X.Y.0`` unless
    ``platform.python_full_version`` says otherwise, as installers do for a target
    Python given without its patch release.
    """
    base = {k: str(v) for k, v in (default_environment() if host is None else host).items()}
    env = {k: base[k] for k in TARGET_MARKERS if k in base}
    env["python_version"] = variant.python
    env["python_full_version"] = f"{variant.python}.0"
    env.update(variant.platform)
    if env.get("implementation_name") == "cpython":
        env["implementation_version"] = env["python_full_version"]
    return env


def freeze(value: Any) -> Any:
    """Read-only views all the way down, so a loaded project cannot be changed by accident."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value
