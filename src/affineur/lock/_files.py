"""The lock on disk: where it lives, its input hash, reading and writing it.

Every reader of a lock goes through here (the build stage, ``affineur check``,
the commands that read locks from the work tree, a folder or a git revision),
so the layout ``lock/<collection>/<variant>/graph.json`` and the checks made on
reading (valid JSON, the schema, the model) are written once.
"""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from affineur import graph as g
from affineur.atomic import write_atomic
from affineur.config import (
    Collection,
    Project,
    Variant,
    lock_meaning,
    schemas_dir,
    target_environment,
    validate,
)
from affineur.errors import AffineurError
from affineur.limits import TOO_DEEP, too_deep

__all__ = [
    "LOCK_FORMAT",
    "LockId",
    "LockPaths",
    "find_locks",
    "input_hash",
    "lock_is_fresh",
    "parse_lock",
    "read_lock",
    "read_locks",
    "write_lock",
]

LOCK_FORMAT = 1

LockId = tuple[str, str]
"""(collection, variant): which lock."""

_GRAPH = "graph.json"


@dataclass(frozen=True)
class LockPaths:
    graph: Path
    build_order: Path

    @classmethod
    def of(cls, root: Path, collection: str, variant: str) -> LockPaths:
        base = root / "lock" / collection / variant
        return cls(base / _GRAPH, base / "build-order.json")

    @staticmethod
    def lock_id(relative: str | Path) -> LockId | None:
        """The lock a path relative to the checkout root holds (None: not a graph.json)."""
        parts = Path(relative).parts
        if len(parts) != 4 or parts[0] != "lock" or parts[3] != _GRAPH:
            return None
        return (parts[1], parts[2])


def find_locks(root: Path) -> dict[LockId, Path]:
    """Every graph.json under ``root/lock``, by (collection, variant), in sorted order."""
    found = {}
    for path in sorted((root / "lock").glob(f"*/*/{_GRAPH}")):
        found[(path.parent.parent.name, path.parent.name)] = path
    return found


def input_hash(project: Project, collection: Collection, variant: Variant) -> str:
    """A hash of what the lock is made from: its meaning, not the bytes of its files.

    The parsed requirements and constraints, the variant's target, indexes and
    discovery mode, and every override field that can change a lock. Comments,
    key order, formatting and build-only settings (``env``, ``resources``,
    ``changelog``, ``timeout``, patches: they are in the build keys) leave it as
    it is, so they never cost a networked re-lock nor fail ``affineur check``.
    Cheap: the no-op path of ``doit`` computes it for every lock.
    """
    meaning = {
        "requirements": sorted(str(Requirement(r)) for r in collection.requirements),
        "constraints": sorted(str(Requirement(c)) for c in collection.constraints),
        "prereleases": collection.prereleases,
        "target": target_environment(variant),
        "indexes": list(variant.indexes),
        "discovery": variant.discovery,
        # Only when set: the locks of every variant without one keep their hash.
        **({"crates_index": variant.crates_index} if variant.crates_index else {}),
        "defaults": lock_meaning(variant.defaults),
        "overrides": {
            name: meaning
            for name, override in sorted(project.overrides.items())
            if (meaning := lock_meaning(override.raw, variant.name))
        },
    }
    digest = hashlib.sha256(f"affineur-lock-{LOCK_FORMAT}\n".encode())
    digest.update(json.dumps(meaning, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def parse_lock(raw: bytes, where: str, *, validated: bool = False) -> g.Graph:
    """A lock from its bytes, checked against its schema unless ``validated``.

    ``where`` names it in errors: a path, or ``rev:lock/...`` for one read from git.
    """
    try:
        data = json.loads(raw)
        if too_deep(data):
            raise RecursionError
    except RecursionError:
        raise AffineurError(
            TOO_DEEP,
            file=where,
            stage="lock",
            hint="restore it from git, or delete it and run 'doit lock'",
        ) from None
    except ValueError as exc:
        raise AffineurError(
            f"not valid JSON ({exc})",
            file=where,
            stage="lock",
            hint="restore it from git, or delete it and run 'doit lock'",
        ) from None
    if not validated:
        validate(data, "graph", file=where)
    return g.from_data(data)


# Far above any real lock (ten thousand packages take some tens of MB), far below
# what would make reading one a way to exhaust memory.
MAX_LOCK_BYTES = 256 << 20


def _read_lock_bytes(path: Path) -> bytes:
    """The bytes of a lock file, refusing what is no file (a FIFO would block the
    read forever, ``/dev/zero`` would never end it) or is too large to be a lock."""
    info = path.stat()
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file"
    elif info.st_size > MAX_LOCK_BYTES:
        problem = f"is {info.st_size} bytes; a lock is limited to {MAX_LOCK_BYTES} bytes"
    if problem is not None:
        raise AffineurError(
            problem,
            file=str(path),
            stage="lock",
            hint="restore it from git, or delete it and run 'doit lock'",
        )
    with path.open("rb") as stream:
        return stream.read(MAX_LOCK_BYTES + 1)


def read_lock(path: Path, *, memo: Path | None = None) -> g.Graph | None:
    """The lock at ``path`` (None when there is none), checked against its schema.

    Checking a large lock costs more than everything else a no-op ``doit``
    does, so with ``memo`` (a folder) the check is remembered for these exact
    bytes and this exact schema, and done again only when either changes.
    """
    try:
        raw = _read_lock_bytes(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AffineurError(f"cannot read the lock: {exc}", file=str(path), stage="lock") from None
    marker = None
    if memo is not None:
        schema = (schemas_dir() / "graph.schema.json").read_bytes()
        marker = memo / hashlib.sha256(hashlib.sha256(schema).digest() + raw).hexdigest()
    known = marker is not None and marker.exists()
    graph = parse_lock(raw, str(path), validated=known)
    if marker is not None and not known:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return graph


def read_locks(root: Path) -> dict[LockId, g.Graph]:
    """Every lock of the checkout (or folder) at ``root``."""
    locks = {}
    for lock_id, path in find_locks(root).items():
        graph = read_lock(path)
        if graph is not None:
            locks[lock_id] = graph
    return locks


def lock_is_fresh(project: Project, collection: Collection, variant: Variant) -> bool:
    path = LockPaths.of(project.root, collection.name, variant.name).graph
    try:
        data = json.loads(_read_lock_bytes(path))
    except (OSError, ValueError, RecursionError, AffineurError):
        return False
    return isinstance(data, dict) and data.get("input_hash") == input_hash(
        project, collection, variant
    )


def write_lock(graph: g.Graph, paths: LockPaths) -> None:
    """Validate, then write both files; a failure leaves the previous lock intact."""
    data = g.to_data(graph)
    validate(data, "graph", file=str(paths.graph))
    order = g.build_order(graph.nodes)
    order_data = [
        {
            "key": k,
            "name": graph.nodes[k].name,
            "version": graph.nodes[k].version,
            "prebuilt": graph.nodes[k].prebuilt,
        }
        for k in order
    ]
    # Unchanged bytes keep their mtime too: nothing changed.
    write_atomic(paths.graph, g.dumps(graph), skip_same=True)
    write_atomic(paths.build_order, json.dumps(order_data, indent=2) + "\n", skip_same=True)
