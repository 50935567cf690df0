"""The lock on disk: where it lives, its input hash, reading and writing it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from affineur import graph as g
from affineur.config import Collection, Project, Variant, project_input_files, schemas_dir, validate
from affineur.errors import AffineurError

__all__ = ["LOCK_FORMAT", "LockPaths", "input_hash", "lock_is_fresh", "read_lock", "write_lock"]

LOCK_FORMAT = 1


@dataclass(frozen=True)
class LockPaths:
    graph: Path
    build_order: Path

    @classmethod
    def of(cls, root: Path, collection: str, variant: str) -> LockPaths:
        base = root / "lock" / collection / variant
        return cls(base / "graph.json", base / "build-order.json")


def input_hash(project: Project, collection: Collection, variant: Variant) -> str:
    """A hash of every file the lock is made from.

    File bytes, not parsed values: cheap enough for the no-op path of ``doit`` and
    obviously complete. A comment edit costs a re-lock that changes no byte of the lock.
    """
    digest = hashlib.sha256(f"affineur-lock-{LOCK_FORMAT}\n".encode())
    wanted = {collection.file, *variant.files}
    for path in project_input_files(project.root):
        rel = path.relative_to(project.root).as_posix()
        if rel.startswith(("collections/", "variants/")) and path not in wanted:
            continue  # other collections and variants do not shape this lock
        digest.update(f"{rel}\n{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def read_lock(path: Path, *, memo: Path | None = None) -> g.Graph | None:
    """The lock at ``path`` (None when there is none), checked against its schema.

    Checking a large lock costs more than everything else a no-op ``doit``
    does, so with ``memo`` (a folder) the check is remembered for these exact
    bytes and this exact schema, and done again only when either changes.
    """
    if not path.exists():
        return None
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise AffineurError(
            f"not valid JSON ({exc})",
            file=str(path),
            stage="lock",
            hint="restore it from git, or delete it and run 'doit lock'",
        ) from None
    marker = None
    if memo is not None:
        schema = (schemas_dir() / "graph.schema.json").read_bytes()
        marker = memo / hashlib.sha256(hashlib.sha256(schema).digest() + raw).hexdigest()
    if marker is None or not marker.exists():
        validate(data, "graph", file=str(path))
        if marker is not None:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    return g.from_data(data)


def lock_is_fresh(project: Project, collection: Collection, variant: Variant) -> bool:
    path = LockPaths.of(project.root, collection.name, variant.name).graph
    try:
        with path.open("rb") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return False
    return bool(data.get("input_hash") == input_hash(project, collection, variant))


def _atomic_write(path: Path, data: bytes) -> None:
    if path.exists() and path.read_bytes() == data:
        return  # leave the mtime alone too: nothing changed
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


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
    _atomic_write(paths.graph, g.dumps(graph))
    _atomic_write(paths.build_order, (json.dumps(order_data, indent=2) + "\n").encode())
