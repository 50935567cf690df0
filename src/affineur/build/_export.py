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
from typing import Any, Literal, Protocol

import tomlkit

from affineur.build._cache import CacheEntry
from affineur.build._key import BuildKey
from affineur.build._provenance import PROVENANCE_SUFFIX
from affineur.errors import AffineurError
from affineur.graph import Graph, NodeKey, install_closure
from affineur.index import read_metadata

__all__ = [
    "ExportedWheel",
    "collect_wheels",
    "constraints_text",
    "pylock_text",
    "target_markers",
    "target_requires_python",
]


class _Cache(Protocol):
    def get(self, key: BuildKey) -> CacheEntry | None: ...


Origin = Literal["built", "prebuilt", "substituted"]
"""Where a wheel came from: built here, or an upstream wheel taken on purpose
(``prebuilt`` in the package's settings) or in place of a failed build (test mode)."""


@dataclass(frozen=True)
class ExportedWheel:
    name: str
    version: str
    filename: str
    sha256: str
    size: int
    origin: Origin = "built"
    requires_python: str | None = None
    dependencies: tuple[str, ...] = ()
    """Names of the packages it installs with (its install edges in the lock)."""
    provenance: str | None = None
    """The file name of its provenance statement, published beside it (built wheels only)."""

    @property
    def upstream(self) -> bool:
        return self.origin != "built"


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
    damaged: list[str] = []
    for key in install_closure(graph):
        node = graph.nodes[key]
        entry = cache.get(keys[key]) if key in keys else None
        wheel = entry.wheel if entry is not None else None
        if wheel is None or not wheel.is_file():
            missing.append(key)
            continue
        record = entry.record() if entry is not None else {}
        digest = _sha256(wheel)
        if digest != record.get("sha256"):
            # Changed since get() verified it: never vouch for bytes the record does not.
            damaged.append(key)
            continue
        origin: Origin = (
            "substituted"
            if record.get("substituted")
            else "prebuilt"
            if record.get("prebuilt") or node.prebuilt
            else "built"
        )
        requires_python = read_metadata(wheel).get("Requires-Python")
        found.append(
            ExportedWheel(
                node.name,
                node.version,
                wheel.name,
                digest,
                wheel.stat().st_size,
                origin=origin,
                requires_python=str(requires_python) if requires_python else None,
                dependencies=tuple(
                    sorted({graph.nodes[e.key].name for e in node.edges_of("install")})
                ),
                provenance=(
                    f"{wheel.name}{PROVENANCE_SUFFIX}"
                    if origin == "built" and entry is not None and entry.provenance
                    else None
                ),
            )
        )
    if damaged:
        raise AffineurError(
            f"{len(damaged)} wheel(s) of {graph.collection}/{graph.variant} changed in the "
            "cache since they were built",
            hint="run doit to build them again, then export again",
            stage="hash",
            causes=tuple(damaged),
        )
    if missing:
        raise AffineurError(
            f"{len(missing)} wheel(s) of {graph.collection}/{graph.variant} are not built yet",
            hint="run doit to build them, then export again",
            stage="build",
            causes=tuple(missing),
        )
    return found


_ORIGIN_NOTE = {
    "prebuilt": "upstream wheel (prebuilt in its settings), not built here",
    "substituted": "upstream wheel standing in for a failed build (test mode), not built here",
}


def constraints_text(wheels: Sequence[ExportedWheel], *, header: str) -> str:
    """Every package pinned with the hash of our wheel, one per line.

    Meant for ``pip install --require-hashes -r FILE``: in hash-checking mode pip
    (and uv) demand that every requirement be pinned and hashed, which a file
    listing the whole install set is, and which ``-c FILE NAME`` never is (NAME
    itself carries no pin). The same file still works as ``-c`` without hashes.
    """
    lines = [f"# {line}" for line in header.splitlines()]
    for w in wheels:
        if w.upstream:
            lines.append(f"# {w.name}: {_ORIGIN_NOTE[w.origin]}")
        pin = f"{w.name}=={w.version} --hash=sha256:{w.sha256}"
        # pip reads " #" to the end of a line as a comment.
        lines.append(f"{pin}  # provenance: {w.provenance}" if w.provenance else pin)
    return "\n".join(lines) + "\n"


# The marker variables that decide whether a built wheel fits an environment;
# the rest of the target (os_name, implementation_version …) follow from these.
_TARGET_MARKERS = ("python_version", "sys_platform", "platform_machine", "implementation_name")


def target_markers(target: Mapping[str, str]) -> str:
    """The variant's target as one PEP 508 marker, for pylock's ``environments``."""
    return " and ".join(f"{k} == {v!r}" for k in _TARGET_MARKERS if (v := target.get(k)))


def target_requires_python(target: Mapping[str, str]) -> str | None:
    """The Python the wheels were built for, as a ``requires-python`` specifier."""
    version = target.get("python_version")
    return f"=={version}.*" if version else None


def pylock_text(
    wheels: Sequence[ExportedWheel],
    *,
    locate: Callable[[ExportedWheel], Mapping[str, str]],
    environment: str | None = None,
    index: str | None = None,
    requires_python: str | None = None,
) -> str:
    """A PEP 751 lock file; ``locate`` gives each wheel its ``path`` or ``url`` entry.

    Each package lists its ``dependencies`` by name (one version of each name is
    installed, so the name identifies the entry), and an upstream wheel says so
    in ``[packages.tool.affineur]``, the table PEP 751 reserves for tools.
    """
    doc = tomlkit.document()
    doc["lock-version"] = "1.0"
    if environment:
        doc["environments"] = [environment]
    if requires_python:
        doc["requires-python"] = requires_python
    doc["created-by"] = "affineur"
    packages = tomlkit.aot()
    for w in wheels:
        package = tomlkit.table()
        package["name"] = w.name
        package["version"] = w.version
        if w.requires_python:
            package["requires-python"] = w.requires_python
        deps = tomlkit.array()
        for dep in w.dependencies:
            item = tomlkit.inline_table()
            item["name"] = dep
            deps.append(item)
        package["dependencies"] = deps
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
        tool = tomlkit.table()
        tool["origin"] = "built" if not w.upstream else "upstream"
        if w.upstream:
            tool["note"] = _ORIGIN_NOTE[w.origin]
        if w.provenance:
            # Published beside the wheel: the wheel's location plus the suffix.
            beside = tomlkit.inline_table()
            beside.update({k: f"{v}{PROVENANCE_SUFFIX}" for k, v in locate(w).items()})
            tool["provenance"] = beside
        package["tool"] = {"affineur": tool}
        packages.append(package)
    doc["packages"] = packages
    return tomlkit.dumps(doc)
