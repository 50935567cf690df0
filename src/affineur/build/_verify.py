"""What a built wheel must be before it enters the cache.

A backend builds whatever its source tree says, and the source tree is whatever
the sdist held: a mislabelled or hostile sdist can produce a wheel of another
project, another version, or another Python. So the wheel is checked against
the lock node it was built for (name and version, from both the file name and
METADATA), against the variant's target (at least one of its tags must fit),
and against itself (every RECORD hash). All problems are reported at once.
"""

from __future__ import annotations

import functools
import platform
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from installer.sources import WheelFile
from packaging.tags import Tag, compatible_tags, cpython_tags, generic_tags, platform_tags
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from affineur import graph as g
from affineur.errors import AffineurError
from affineur.index import read_metadata

__all__ = ["check_wheel_record", "target_tags", "verify_wheel", "wheel_problems"]


def target_tags(target: Mapping[str, str]) -> tuple[frozenset[Tag], bool]:
    """The tags a wheel for ``target`` (a PEP 508 marker environment) may carry.

    Returns the tags and whether their platforms are meaningful: for a target on
    this machine's platform they are this interpreter's platform tags; for
    another platform only the Python and ABI parts can be checked here.
    """
    # Thousands of tags, the same for every build of a variant: made once.
    return _target_tags(tuple(sorted(target.items())))


@functools.lru_cache(maxsize=16)
def _target_tags(items: tuple[tuple[str, str], ...]) -> tuple[frozenset[Tag], bool]:
    target = dict(items)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    version = target.get("python_version", running)
    try:
        python = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        python = (sys.version_info.major, sys.version_info.minor)
    same_platform = (
        target.get("sys_platform", sys.platform) == sys.platform
        and target.get("platform_machine", platform.machine()) == platform.machine()
    )
    platforms = list(platform_tags()) if same_platform else ["any"]
    if target.get("implementation_name", sys.implementation.name) == "cpython":
        tags = [*cpython_tags(python, platforms=platforms)]
        interpreter = f"cp{python[0]}{python[1]}"
    else:
        tags = [*generic_tags(platforms=platforms)]
        interpreter = None
    tags += compatible_tags(python, interpreter=interpreter, platforms=platforms)
    return frozenset(tags), same_platform


def _fits(tags: Iterable[Tag], allowed: frozenset[Tag], platforms_known: bool) -> bool:
    if platforms_known:
        return any(tag in allowed for tag in tags)
    pairs = {(t.interpreter, t.abi) for t in allowed}
    return any((t.interpreter, t.abi) in pairs for t in tags)


def check_wheel_record(wheel: Path) -> list[str]:
    """Every RECORD problem of ``wheel`` (a missing, extra or mismatching file)."""
    try:
        with WheelFile.open(wheel) as source:
            source.validate_record()
    except Exception as exc:  # installer raises its own ValueError subclass, with a list
        issues = getattr(exc, "issues", None)
        if isinstance(issues, list) and issues:
            return [f"RECORD: {str(issue).replace(f'In {wheel}, ', '')}" for issue in issues]
        return [f"RECORD: {exc}"]
    return []


def wheel_problems(wheel: Path, node: g.Node, target: Mapping[str, str]) -> list[str]:
    """Why ``wheel`` is not the wheel of ``node`` for ``target`` (empty when it is)."""
    try:
        name, version, _build, tags = parse_wheel_filename(wheel.name)
    except InvalidWheelFilename as exc:
        return [f"{wheel.name} is not a valid wheel file name: {exc}"]
    problems = []
    if canonicalize_name(name) != node.name or version != Version(node.version):
        problems.append(
            f"the wheel is {name} {version}, but the lock node is {node.name} {node.version}"
        )
    try:
        metadata = read_metadata(wheel)
    except AffineurError as exc:
        return [*problems, exc.message]
    meta_name, meta_version = str(metadata.get("Name", "")), str(metadata.get("Version", ""))
    try:
        meta_ok = canonicalize_name(meta_name) == node.name and Version(meta_version) == Version(
            node.version
        )
    except InvalidVersion:
        meta_ok = False
    if not meta_ok:
        problems.append(
            f"its METADATA says {meta_name or '?'} {meta_version or '?'}, "
            f"but the lock node is {node.name} {node.version}"
        )
    allowed, platforms_known = target_tags(target)
    if not _fits(tags, allowed, platforms_known):
        shown = ", ".join(sorted(str(t) for t in tags))
        where = target.get("python_version", "?")
        problems.append(f"its tags ({shown}) do not fit the target (Python {where})")
    return problems + check_wheel_record(wheel)


def verify_wheel(wheel: Path, node: g.Node, target: Mapping[str, str]) -> None:
    """Raise with every problem when ``wheel`` is not what the lock says was built."""
    problems = wheel_problems(wheel, node, target)
    if problems:
        raise AffineurError(
            f"the built wheel {wheel.name} is not what the lock says",
            stage="verify",
            causes=tuple(problems),
            hint=(
                "the sdist does not build the locked package: check its file name and "
                "sha256 in the lock, and re-lock if the source changed"
            ),
        )
