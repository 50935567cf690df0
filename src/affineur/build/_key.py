"""Build keys: the content address of one build's result.

A key hashes everything that can change the wheel: the package, its version and
sdist hash, the variant, the effective settings for this package and variant, the
patches, what shapes the SBOM written into the wheel, the target environment,
the host tools a build can use (compilers, rustc, cmake ...: name and version,
see :mod:`affineur.build._hosttools`), the exact interpreter that builds, and —
recursively — the keys of every wheel in its build environment. So changing
setuptools' settings changes the key of every package built with setuptools, and
only those rebuild; a compiler upgrade rebuilds, a kernel upgrade does not.

Pure: callers pass the settings and patch hashes in; nothing here reads files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NewType

from affineur.graph import Graph, Node, NodeKey, build_order

__all__ = ["BuildInputs", "BuildKey", "build_keys", "compute_key"]

BuildKey = NewType("BuildKey", str)
# 2: wheels carry an SBOM and are normalized (order, dates, modes) when rewritten.
KEY_FORMAT = 2


@dataclass(frozen=True)
class BuildInputs:
    """What one node's build depends on besides the graph."""

    settings: Mapping[str, Any]  # Settings.to_json()
    patches: Sequence[tuple[str, str]] = ()  # (file name, sha256), in application order
    host_tools: Mapping[str, str] = field(default_factory=dict)
    """Tool name -> version line of what the build can use from the host."""
    sbom: Mapping[str, Any] = field(default_factory=dict)  # build._sbom.sbom_key_input()
    python: str = ""
    """The interpreter that builds, exactly (``cpython 3.12.1 cp312``): a new patch
    release of the variant's Python rebuilds, as a new compiler does."""


def compute_key(
    node: Node,
    *,
    variant: str,
    target: Mapping[str, str],
    inputs: BuildInputs,
    env_keys: Sequence[BuildKey],
) -> BuildKey:
    if node.prebuilt:
        assert node.wheel is not None
        data: dict[str, Any] = {
            "format": KEY_FORMAT,
            "prebuilt": True,
            "name": node.name,
            "version": node.version,
            "wheel": node.wheel.sha256,
        }
    else:
        assert node.sdist is not None
        data = {
            "format": KEY_FORMAT,
            "name": node.name,
            "version": node.version,
            "sdist": node.sdist.sha256,
            "variant": variant,
            "settings": inputs.settings,
            "patches": [list(p) for p in inputs.patches],
            "target": dict(sorted(target.items())),
            "build_env": sorted(env_keys),
            "host_tools": dict(sorted(inputs.host_tools.items())),
            "sbom": dict(inputs.sbom),
            "python": inputs.python,
        }
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return BuildKey(hashlib.sha256(raw).hexdigest())


def build_keys(graph: Graph, inputs_for: Callable[[Node], BuildInputs]) -> dict[NodeKey, BuildKey]:
    """Keys of every node, computed in build order so each sees its environment's keys."""
    keys: dict[NodeKey, BuildKey] = {}
    for key in build_order(graph.nodes):
        node = graph.nodes[key]
        keys[key] = compute_key(
            node,
            variant=graph.variant,
            target=graph.target,
            inputs=inputs_for(node),
            env_keys=[keys[k] for k in node.build_env] if not node.prebuilt else [],
        )
    return keys
