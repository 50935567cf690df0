"""One file an index offers for a project, with what its name says (kind, version, tags).

Every source of files (the simple API's pages, URL templates, git archives, site
plugins) describes what it offers as :class:`DistFile` through :func:`make_file`,
so one rule decides which names are usable: installers, eggs and files named for
another project are dropped here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from packaging.tags import Tag
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from affineur.errors import AffineurError
from affineur.index._files import SDIST_SUFFIXES, check_filename

__all__ = ["DistFile", "make_file"]


@dataclass(frozen=True)
class DistFile:
    """One file an index offers for a project."""

    project: NormalizedName
    filename: str
    url: str
    kind: Literal["sdist", "wheel"]
    version: Version | None
    sha256: str | None = None
    requires_python: str | None = None
    yanked: str | bool = False
    size: int | None = None
    tags: frozenset[Tag] = frozenset()
    # True/False when the index says whether ``<url>.metadata`` exists (PEP 658/714),
    # None when it does not say (then it is worth trying anyway).
    core_metadata: bool | None = None
    core_metadata_sha256: str | None = None
    # PEP 740: the URL of the file's provenance object, when the index has one.
    provenance: str | None = None


def _sdist_version(project: NormalizedName, filename: str) -> Version | None:
    """The version in an sdist name, or None when it is not ``project``'s sdist.

    Legacy sdists predate PEP 625 normalisation (``python-dateutil-2.8.2``), so the
    split point is found by matching the project name instead of trusting the last
    dash.
    """
    suffix = next((s for s in SDIST_SUFFIXES if filename.lower().endswith(s)), None)
    if suffix is None:
        return None
    stem = filename[: -len(suffix)]
    for i, char in enumerate(stem):
        if char == "-" and canonicalize_name(stem[:i]) == project:
            try:
                return Version(stem[i + 1 :])
            except InvalidVersion:
                return None
    return None


def make_file(
    project: NormalizedName,
    filename: str,
    url: str,
    *,
    sha256: str | None = None,
    requires_python: str | None = None,
    yanked: str | bool = False,
    size: int | None = None,
    core_metadata: bool | None = None,
    core_metadata_sha256: str | None = None,
    provenance: str | None = None,
) -> DistFile | None:
    """A :class:`DistFile`, or None for files we cannot use (installers, eggs, odd names)."""
    try:
        check_filename(filename)
    except AffineurError:
        return None
    common: dict[str, Any] = {
        "sha256": sha256.lower() if sha256 else None,
        "requires_python": requires_python.strip() if requires_python else None,
        "yanked": yanked,
        "size": size,
        "core_metadata": core_metadata,
        "core_metadata_sha256": core_metadata_sha256,
        "provenance": provenance,
    }
    if filename.lower().endswith(".whl"):
        try:
            name, version, _build, tags = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion):
            return None
        if name != project:
            return None
        return DistFile(project, filename, url, "wheel", version, tags=tags, **common)
    sdist_version = _sdist_version(project, filename)
    if sdist_version is None:
        return None
    return DistFile(project, filename, url, "sdist", sdist_version, **common)
