"""Which files of a release may be used: the one place for yanked, Requires-Python and tags.

The resolver's candidate source, ``affineur outdated``, upstream wheels for
discovery and prebuilt packages, and test-mode substitutes all choose among an
index's files; they all ask here, so a rule (PEP 592 for yanked files, a
Requires-Python we cannot read) is decided once. Pure: lists of
:class:`~affineur.index._distfile.DistFile` in, a choice out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.version import Version

from affineur.index._distfile import DistFile

__all__ = ["best_wheel", "python_allows", "usable_files"]


# Asked for every file of every project at every resolution step (tens of
# thousands of times per lock) about a few dozen distinct strings: parsing a
# SpecifierSet each time was a fifth of a lock's time.
@functools.lru_cache(maxsize=4096)
def python_allows(requires_python: str | None, python_version: Version) -> bool:
    """Whether a file's Requires-Python admits ``python_version``.

    A constraint we cannot read might not install; such a file is skipped rather
    than guessed at, and another file of the same version may serve.
    """
    if not requires_python:
        return True
    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return False
    return spec.contains(python_version, prereleases=True)


def _is_exact_pin(pinned: SpecifierSet | None, version: Version) -> bool:
    if pinned is None:
        return False
    exact = [s for s in pinned if s.operator in ("==", "===") and not s.version.endswith(".*")]
    return bool(exact) and pinned.contains(version, prereleases=True)


def usable_files(
    files: Iterable[DistFile],
    *,
    python_version: Version,
    allow_prereleases: bool,
    pinned: SpecifierSet | None = None,
) -> list[DistFile]:
    """The files a requirement ``pinned`` may use on ``python_version``, in input order.

    Yanked files only for an exact ``==``/``===`` pin of their version (PEP 592).
    Pre-releases follow :meth:`SpecifierSet.filter`: used when asked for, when the
    specifier names one, or when nothing else satisfies it. Files outside ``pinned``
    are dropped too.
    """
    candidates = [
        f
        for f in files
        if f.version is not None
        and (not f.yanked or _is_exact_pin(pinned, f.version))
        and python_allows(f.requires_python, python_version)
    ]
    spec = pinned if pinned is not None else SpecifierSet()
    versions = {f.version for f in candidates if f.version is not None}
    keep = set(spec.filter(versions, prereleases=True if allow_prereleases else None))
    return [f for f in candidates if f.version in keep]


def best_wheel(files: Sequence[DistFile], version: Version, tags: Sequence[Tag]) -> DistFile | None:
    """The wheel of ``version`` whose tags rank best for this interpreter, not yanked."""
    rank = {tag: i for i, tag in enumerate(tags)}
    best: tuple[int, DistFile] | None = None
    for f in files:
        if f.kind != "wheel" or f.version != version or f.yanked:
            continue
        score = min((rank[t] for t in f.tags if t in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, f)
    return None if best is None else best[1]
