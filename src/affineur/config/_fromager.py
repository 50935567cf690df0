"""``affineur import-fromager``: start a collection from a fromager ``graph.json``.

fromager's graph records what it built (``name==version`` nodes, typed edges,
download URLs) but no hashes, and our lock requires the sha256 of every sdist.
Computing them would mean downloading every sdist, so the import does not
write a lock at all: it writes ``collections/<name>.toml`` whose requirements
are fromager's top-level requirements exactly as written, and whose
constraints pin the install closure to the versions fromager built. ``doit
lock`` then produces a hash-checked lock of the same versions, with build
environments discovered rather than copied.

Build tools are not pinned: fromager may hold several versions of one tool,
and our locker resolves each build environment as one set anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import tomlkit
from packaging.utils import canonicalize_name

from affineur.config._edit import write_validated
from affineur.errors import AffineurError

__all__ = ["FromagerGraph", "collection_text", "import_fromager", "parse_fromager"]

_REQ_TYPES = frozenset({"toplevel", "install", "build-system", "build-backend", "build-sdist"})


@dataclass(frozen=True)
class FromagerGraph:
    """What the import keeps from fromager's graph."""

    toplevel: tuple[str, ...]
    """Top-level requirement strings as the user gave them to fromager."""
    pins: tuple[tuple[str, str], ...]
    """(name, version) for each name of the install closure that has one version."""
    unpinned: tuple[str, ...]
    """Names the install closure holds in several versions (fromager resolves alone)."""
    prebuilt: tuple[str, ...]
    """``name==version`` fromager took as upstream wheels."""
    nodes: int


def _problem(file: str, key_path: tuple[str | int, ...], message: str) -> AffineurError:
    return AffineurError(message, file=file, key_path=key_path, stage="config")


def _edges(
    data: Mapping[str, object], key: str, file: str, problems: list[AffineurError]
) -> list[tuple[str, str, str]]:
    node = data[key]
    raw = node.get("edges", []) if isinstance(node, dict) else None
    if not isinstance(raw, list):
        problems.append(_problem(file, (key, "edges"), "expected a list of edges"))
        return []
    out = []
    for i, e in enumerate(raw):
        if not (isinstance(e, dict) and all(isinstance(e.get(f), str) for f in ("key", "req"))):
            problems.append(_problem(file, (key, "edges", i), "expected {key, req_type, req}"))
        elif e.get("req_type") not in _REQ_TYPES:
            problems.append(
                _problem(file, (key, "edges", i, "req_type"), f"unknown {e.get('req_type')!r}")
            )
        elif e["key"] not in data:
            problems.append(_problem(file, (key, "edges", i, "key"), f"no node {e['key']!r}"))
        else:
            out.append((e["key"], e["req_type"], e["req"]))
    return out


def parse_fromager(data: object, *, file: str) -> FromagerGraph:
    """Read fromager's graph; every structural problem is reported at once."""
    if not isinstance(data, dict) or "" not in data:
        raise AffineurError(
            'not a fromager graph: expected an object with a root node keyed ""',
            file=file,
            stage="config",
        )
    problems: list[AffineurError] = []
    edges = {key: _edges(data, key, file, problems) for key in sorted(data)}
    for key in sorted(data):
        node = data[key]
        if key and not (isinstance(node, dict) and "==" in key):
            problems.append(_problem(file, (key,), "expected a 'name==version' node object"))
    if problems:
        raise AffineurError(
            f"{len(problems)} problem(s) in the fromager graph",
            file=file,
            stage="config",
            causes=tuple(p.one_line() for p in problems),
        )
    toplevel = [(k, req) for k, t, req in edges[""] if t == "toplevel"]
    closure: set[str] = set()
    stack = [k for k, _ in toplevel]
    while stack:
        key = stack.pop()
        if key not in closure:
            closure.add(key)
            stack += [k for k, t, _ in edges[key] if t == "install"]
    versions: dict[str, set[str]] = {}
    for key in closure:
        name, _, version = key.partition("==")
        versions.setdefault(canonicalize_name(name), set()).add(version)
    return FromagerGraph(
        toplevel=tuple(sorted({req for _, req in toplevel})),
        pins=tuple((n, next(iter(v))) for n, v in sorted(versions.items()) if len(v) == 1),
        unpinned=tuple(n for n, v in sorted(versions.items()) if len(v) > 1),
        prebuilt=tuple(
            k for k in sorted(data) if k and isinstance(data[k], dict) and data[k].get("pre_built")
        ),
        nodes=len(data) - 1,
    )


def _array(items: Sequence[str]) -> tomlkit.items.Array:
    array = tomlkit.array()
    array.extend(items)
    return array.multiline(len(items) > 1)


def collection_text(graph: FromagerGraph, *, variants: Sequence[str], source: str) -> str:
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"Imported from fromager's {source}."))
    doc.add(tomlkit.comment("requirements: fromager's top-level requirements, as written."))
    doc.add(tomlkit.comment("constraints: the install closure pinned to the versions fromager"))
    doc.add(tomlkit.comment("built, so 'doit lock' locks the same set; drop a pin to let it move."))
    doc["description"] = f"imported from fromager ({source})"
    doc["variants"] = _array(list(variants))
    doc["requirements"] = _array(list(graph.toplevel))
    if graph.pins:
        doc["constraints"] = _array([f"{n}=={v}" for n, v in graph.pins])
    return tomlkit.dumps(doc)


def import_fromager(
    root: Path, graph: FromagerGraph, *, name: str, variants: Sequence[str], source: str
) -> Path:
    """Write ``collections/<name>.toml`` (validated with the whole project); never a lock."""
    path = root / "collections" / f"{name}.toml"
    if path.exists():
        raise AffineurError(
            f"collection {name!r} exists already",
            hint="choose another --collection name, or delete the file first",
            file=str(path),
            stage="config",
        )
    if not variants:
        raise AffineurError(
            "the project has no variants to build the collection for",
            hint="create variants/<name>.yaml, or pass --variant",
            stage="config",
        )
    if not graph.toplevel:
        raise AffineurError(
            "the fromager graph has no top-level requirements", file=source, stage="config"
        )
    write_validated(root, {path: collection_text(graph, variants=variants, source=source)})
    return path
