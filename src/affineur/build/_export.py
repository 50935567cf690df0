"""Hand the built install set to pip and friends: constraints files and PEP 751 pylock.toml.

Both carry the sha256 of OUR wheels (from the build cache), not of anything
upstream: installing with them refuses any wheel we did not build. Only the
install closure is exported; build tools never reach a user's environment.

The writers are pure; :func:`collect_wheels` is the one function that reads the cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import tomlkit

from affineur.build._cache import CacheEntry
from affineur.build._key import BuildKey
from affineur.errors import AffineurError
from affineur.graph import Graph, NodeKey, install_closure

__all__ = [
    "ExportedWheel",
    "collect_wheels",
    "constraints_text",
    "pylock_text",
    "target_markers",
]


class _Cache(Protocol):
    def get(self, key: BuildKey) -> CacheEntry | None: ...


@dataclass(frozen=True)
class ExportedWheel:
    name: str
    version: str
    filename: str
    sha256: str
    size: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def collect_wheels(
    graph: Graph, keys: Mapping[NodeKey, BuildKey], cache: _Cache
) -> list[ExportedWheel]:
    """The built wheel of every package in the install closure, hashed from the file itself.

    The hash is taken from the wheel, not from its build record, so an export
    can never vouch for bytes that are not there. All missing wheels are listed
    at once.
    """
    found: list[ExportedWheel] = []
    missing: list[str] = []
    for key in install_closure(graph):
        node = graph.nodes[key]
        entry = cache.get(keys[key]) if key in keys else None
        wheel = entry.wheel if entry is not None else None
        if wheel is None or not wheel.is_file():
            missing.append(key)
            continue
        found.append(
            ExportedWheel(node.name, node.version, wheel.name, _sha256(wheel), wheel.stat().st_size)
        )
    if missing:
        raise AffineurError(
            f"{len(missing)} wheel(s) of {graph.collection}/{graph.variant} are not built yet",
            hint="run doit to build them, then export again",
            stage="build",
            causes=tuple(missing),
        )
    return found


def constraints_text(wheels: Sequence[ExportedWheel], *, header: str) -> str:
    """pip constraints with hashes: ``pip install -c FILE --require-hashes`` style pins."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{w.name}=={w.version} --hash=sha256:{w.sha256}" for w in wheels]
    return "\n".join(lines) + "\n"


# The marker variables that decide whether a built wheel fits an environment;
# the rest of the target (os_name, implementation_version …) follow from these.
_TARGET_MARKERS = ("python_version", "sys_platform", "platform_machine", "implementation_name")


def target_markers(target: Mapping[str, str]) -> str:
    """The variant's target as one PEP 508 marker, for pylock's ``environments``."""
    return " and ".join(f"{k} == {v!r}" for k in _TARGET_MARKERS if (v := target.get(k)))


def pylock_text(
    wheels: Sequence[ExportedWheel],
    *,
    locate: Callable[[ExportedWheel], Mapping[str, str]],
    environment: str | None = None,
    index: str | None = None,
) -> str:
    """A PEP 751 lock file; ``locate`` gives each wheel its ``path`` or ``url`` entry."""
    doc = tomlkit.document()
    doc["lock-version"] = "1.0"
    if environment:
        doc["environments"] = [environment]
    doc["created-by"] = "affineur"
    packages = tomlkit.aot()
    for w in wheels:
        package = tomlkit.table()
        package["name"] = w.name
        package["version"] = w.version
        if index:
            package["index"] = index
        wheel: dict[str, Any] = {"name": w.filename, **locate(w), "size": w.size}
        entry = tomlkit.inline_table()
        entry.update(wheel)
        hashes = tomlkit.inline_table()
        hashes["sha256"] = w.sha256
        entry["hashes"] = hashes
        array = tomlkit.array()
        array.append(entry)
        package["wheels"] = array
        packages.append(package)
    doc["packages"] = packages
    return tomlkit.dumps(doc)
