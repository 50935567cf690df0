"""A variant with its ``extends`` chain applied, and the loops that chain must not have.

A variant file may extend another: its mappings merge key by key over the base's,
its lists and scalars replace them. The loop check runs first and reports each
loop once, as its path, so the merge may assume a chain that ends.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, cast

from affineur.config._documents import Document
from affineur.config._models import (
    Discovery,
    Evidence,
    SandboxChoice,
    SandboxSetting,
    Variant,
    freeze,
)
from affineur.errors import AffineurError

__all__ = ["extends_loops", "variant_of"]


def extends_loops(variants: Mapping[str, Document]) -> list[AffineurError]:
    """One problem per ``extends`` loop, shown as its path (``a -> b -> a``)."""
    problems: list[AffineurError] = []
    reported: set[frozenset[str]] = set()
    for start in sorted(variants):
        chain: list[str] = []
        current: str | None = start
        while current is not None and current in variants and current not in chain:
            chain.append(current)
            extends = variants[current].data.get("extends")
            current = extends if isinstance(extends, str) else None
        if current is None or current not in chain:
            continue
        loop = chain[chain.index(current) :]
        if frozenset(loop) in reported:
            continue
        reported.add(frozenset(loop))
        first = min(loop)
        at = loop.index(first)
        ordered = [*loop[at:], *loop[:at], first]
        problems.append(
            variants[first].problem(
                "extends loop: " + " -> ".join(ordered),
                ("extends",),
                "remove 'extends' from one of these variants",
            )
        )
    return problems


def variant_of(name: str, documents: Mapping[str, Document]) -> Variant:
    data = _extended(name, documents)
    return Variant(
        name=name,
        description=data.get("description", ""),
        python=data.get("python", f"{sys.version_info.major}.{sys.version_info.minor}"),
        platform=MappingProxyType(dict(data.get("platform", {}))),
        indexes=tuple(data.get("indexes", ())),
        discovery=cast(Discovery, data.get("discovery", "wheels")),
        env=MappingProxyType(dict(data.get("env", {}))),
        resources=MappingProxyType({k: float(v) for k, v in data.get("resources", {}).items()}),
        defaults=freeze(data.get("defaults", {})),
        changelog=tuple(data.get("changelog", ())),
        timeout=float(data["timeout"]) if data.get("timeout") is not None else None,
        network_isolation=bool(data.get("network_isolation", True)),
        sandbox=SandboxSetting(
            kind=cast(SandboxChoice, data.get("sandbox", {}).get("kind", "auto")),
            read_only=tuple(data.get("sandbox", {}).get("read_only", ())),
            writable=tuple(data.get("sandbox", {}).get("writable", ())),
        ),
        file=documents[name].path,
        remote_cache=freeze(data["remote_cache"]) if "remote_cache" in data else None,
        executor=data.get("executor"),
        files=tuple(documents[n].path for n in _chain(name, documents)),
        pass_env=tuple(data.get("pass_env", ())),
        evidence=_evidence(data.get("evidence", {})),
        interpreter=data.get("interpreter"),
        crates_index=data.get("crates_index"),
    )


def _evidence(data: Mapping[str, Any]) -> Evidence:
    supplier = data.get("supplier", {})
    return Evidence(
        supplier=supplier.get("name"),
        supplier_url=supplier.get("url"),
        namespace=data.get("namespace"),
        builder_id=data.get("builder_id"),
    )


def _chain(name: str, documents: Mapping[str, Document]) -> list[str]:
    """``name`` and the variants it extends, nearest first (loops are rejected before this)."""
    chain = [name]
    while (base := documents[chain[-1]].data.get("extends")) is not None:
        chain.append(base)
    return chain


def _extended(name: str, documents: Mapping[str, Document]) -> dict[str, Any]:
    """The variant's data merged over what it extends (loops are rejected before this)."""
    data = documents[name].data
    base = data.get("extends")
    own = {k: v for k, v in data.items() if k != "extends"}
    return _deep_merge(_extended(base, documents), own) if base else own


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; lists and scalars of ``over`` replace ``base``'s."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
