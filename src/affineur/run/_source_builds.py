"""Wheels built while locking, for a ``discovery: source`` variant.

The lock stage decides what to build and in which order (lock/ does not know
stage 2); this wires its :class:`~affineur.lock.SourceBuilds` interface to stage
2's builder and cache, with the very build keys stage 2 computes from the lock,
so what discovery built is reused, not built again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from affineur import graph as g
from affineur.build import BuildCache, Builder, BuildInputs, BuildKey, BuildRequest, compute_key
from affineur.config import Settings, Variant
from affineur.pep517 import Interpreter
from affineur.progress import BuildingForDiscovery, Reporter

__all__ = ["SourceModeBuilds"]


class SourceModeBuilds:
    def __init__(
        self,
        variant: Variant,
        *,
        builder: Builder,
        cache: BuildCache,
        settings: Callable[[g.Node], Settings],
        inputs: Callable[[g.Node], BuildInputs],
        patches: Callable[[g.Node], Sequence[Path]],
        reporter: Reporter,
        interpreter: Interpreter | None = None,
    ) -> None:
        self.variant = variant
        self.interpreter = interpreter
        self.builder = builder
        self.cache = cache
        self.settings = settings
        self.inputs = inputs
        self.patches = patches
        self.reporter = reporter
        self._keys: dict[g.NodeKey, BuildKey] = {}

    def _key(self, node: g.Node, target: Mapping[str, str]) -> BuildKey:
        if node.key in self._keys:
            return self._keys[node.key]
        assert node.prebuilt, f"{node.key} was not built before its dependents"
        return compute_key(
            node, variant=self.variant.name, target=target, inputs=BuildInputs({}), env_keys=[]
        )

    def wheel(
        self, node: g.Node, env: Sequence[tuple[g.Node, Path]], target: Mapping[str, str]
    ) -> Path:
        key = compute_key(
            node,
            variant=self.variant.name,
            target=target,
            inputs=self.inputs(node),
            env_keys=[self._key(member, target) for member, _ in env],
        )
        self._keys[node.key] = key
        if self.cache.get(key) is None:
            self.reporter.report(BuildingForDiscovery(node.name, node.version))
        request = BuildRequest(
            node=node,
            key=key,
            variant=self.variant.name,
            target=target,
            settings=self.settings(node),
            patches=self.patches(node),
            env_wheels=[wheel for _, wheel in env],
            network_isolation=self.variant.network_isolation,
            sandbox=self.variant.sandbox,
            evidence=self.variant.evidence,
            env_keys=[self._key(member, target) for member, _ in env],
            interpreter=self.interpreter,
        )
        # Its dependencies are not resolved here; stage 2 checks them against the lock.
        return self.builder.build(request, None).wheel
