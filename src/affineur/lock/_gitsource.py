"""Which versions a package from git has, and where each one is.

A repository has no list of releases the resolver could choose from, so the
version comes from the override or the collection: a ref without
``${version}`` (``v2.1.0``, ``release-2.1.0``) names its version; a ref with
it (``v${version}``), or a commit, takes the version the collection pins with
``==`` (a requirement or a constraint). The backend's own metadata then has to
agree (:meth:`IndexCandidates._git_requires`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from packaging.utils import NormalizedName
from packaging.version import InvalidVersion, Version

from affineur.config import expand_template
from affineur.errors import AffineurError

__all__ = ["git_location", "git_versions"]

# A tag is often the version behind a word: v1.2, release-1.2, name-1.2.
_TAG_VERSION = re.compile(r"^(?:.*?[-_/])?v?(?P<version>\d[^/]*)$")


def git_location(git: Mapping[str, str], name: str, version: str) -> tuple[str, str]:
    """The repository URL and ref for one version, templates expanded."""
    variables = {"name": name, "version": version}
    return (
        expand_template(git["url"], variables, key_path=("git", "url")),
        expand_template(git["ref"], variables, key_path=("git", "ref")),
    )


def git_versions(
    name: NormalizedName, git: Mapping[str, str], pins: Sequence[Version] | None
) -> list[Version]:
    """The versions a git source offers: the ref's own, else the collection's pins."""
    ref = git["ref"]
    if "${version}" not in ref:
        match = _TAG_VERSION.match(ref.rsplit("/", 1)[-1])
        if match and not re.fullmatch(r"[0-9a-f]{7,64}", ref):
            try:
                return [Version(match.group("version"))]
            except InvalidVersion:
                pass
    if pins:
        return sorted(set(pins))
    raise AffineurError(
        f"the git ref {ref!r} names no version",
        package=name,
        stage="resolve",
        key_path=("git", "ref"),
        hint=f"pin it in the collection ('{name}==VERSION' in requirements or constraints)",
    )
