"""doit tasks, generated from the checked-in locks at load time.

The dodo file only forwards to the creators here; each creator returns plain
task dicts whose actions call typed engine functions, so ``doit list``, ``doit
info`` and ``doit forget`` see every package, and the same code runs under doit,
under the ``affineur`` command and in tests.

Task groups::

    lock:<collection>:<variant>       up to date while the lock's input hash matches
    download:<file>                   an sdist (or a prebuilt wheel), verified on use
    build:<variant>:<name>-<version>  one wheel into build/cache/<build-key>/
    publish:<collection>:<variant>    dist/<collection>/<variant>/simple/ from the cache
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from doit.exceptions import InvalidDodoFile, TaskFailed
from doit.tools import config_changed

from affineur import graph as g
from affineur.build import (
    BuildCache,
    Builder,
    BuildInputs,
    BuildKey,
    BuildRequest,
    build_keys,
    publish_index,
)
from affineur.config import (
    Collection,
    Project,
    Settings,
    Variant,
    default_index_url,
    effective_settings,
    find_patches,
    load_project,
    patch_hashes,
)
from affineur.errors import AffineurError
from affineur.index import Fetcher, IndexClient, SdistStore, UrlSource, source_url
from affineur.lock import LockPaths, lock, lock_is_fresh, read_lock
from affineur.progress import Reporter, StreamReporter
from affineur.run._doit_reporter import ActionFailed, write_load_failure
from affineur.run._reports import RunRecorder
from affineur.run._scheduler import run_command_active
from affineur.run._source_builds import SourceModeBuilds
from affineur.run._substitution import Attempts, refuse_substitutes, trusted

__all__ = ["Engine", "TaskDict"]

TaskDict = dict[str, Any]


def failure(exc: AffineurError) -> TaskFailed:
    lines = [f"error: {exc.one_line()}"]
    lines += [f"  {c}" for c in exc.causes]
    if exc.hint:
        lines.append(f"hint: {exc.hint}")
    return ActionFailed("\n".join(lines), exc)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an engine function as a doit action; turn our errors into a clean failure."""

    def action(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
        except AffineurError as exc:
            return failure(exc)
        return None if result is None else True

    action.__name__ = getattr(fn, "__name__", "action")
    action.__doc__ = fn.__doc__
    return action


@dataclass(frozen=True)
class LockedVariant:
    collection: Collection
    variant: Variant
    graph: g.Graph
    keys: Mapping[g.NodeKey, BuildKey]


@dataclass
class Engine:
    """The checkout as doit sees it: config, locks, build keys and paths, loaded once."""

    root: Path
    reporter: Reporter = field(default_factory=StreamReporter)
    test_mode: bool = False
    """Keep going after failures, substituting upstream wheels (see affineur.run._substitution)."""
    recorder: RunRecorder = field(default_factory=RunRecorder)

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @cached_property
    def project(self) -> Project:
        return load_project(self.root)

    @cached_property
    def store(self) -> SdistStore:
        return SdistStore(self.build_dir / "sdists")

    @cached_property
    def cache(self) -> BuildCache:
        return BuildCache(self.build_dir / "cache")

    @cached_property
    def builder(self) -> Builder:
        # Made by the first build action only, so a no-op run never scans the cache.
        self.cache.discard_stale_staging()
        return Builder(cache=self.cache, store=self.store, workdir=self.build_dir)

    @cached_property
    def attempts(self) -> Attempts:
        return Attempts(
            cache=self.cache,
            recorder=self.recorder,
            downloads=self.build_dir / "substitutes",
            test_mode=self.test_mode,
        )

    _clients: dict[tuple[str, ...], IndexClient] = field(default_factory=dict)

    def client(self, variant: Variant) -> IndexClient:
        urls = tuple(variant.indexes) or (default_index_url(),)
        if urls not in self._clients:
            self._clients[urls] = IndexClient(urls)
        return self._clients[urls]

    def pairs(self) -> list[tuple[Collection, Variant]]:
        return [
            (c, self.project.variants[v])
            for c in sorted(self.project.collections.values(), key=lambda c: c.name)
            for v in c.variants
        ]

    # --- stage 1 ------------------------------------------------------------

    def lock(
        self, collection: str, variant: str, upgrade: frozenset[str] | bool = frozenset()
    ) -> Path:
        c = self.project.collections[collection]
        v = self.project.variants[variant]
        builds = None
        if v.discovery == "source":
            builds = SourceModeBuilds(
                v,
                builder=self.builder,
                cache=self.cache,
                settings=partial(self.settings, v),
                inputs=partial(self.inputs, v),
                patches=lambda n: find_patches(self.root, n.name, n.version, v.name),
                reporter=self.reporter,
            )
        paths = lock(
            self.project,
            c,
            v,
            client=self.client(v),
            workdir=self.build_dir,
            reporter=self.reporter,
            upgrade=upgrade,
            builds=builds,
        )
        self.__dict__.pop("locked", None)
        self.__dict__.pop("build_task_names", None)
        self._fresh.pop((collection, variant), None)
        return paths.graph

    _fresh: dict[tuple[str, str], bool] = field(default_factory=dict)

    def is_fresh(self, collection: Collection, variant: Variant) -> bool:
        """Whether the lock matches its inputs; hashed once per run, not once per asker."""
        key = (collection.name, variant.name)
        if key not in self._fresh:
            self._fresh[key] = lock_is_fresh(self.project, collection, variant)
        return self._fresh[key]

    def relock_stale(self) -> None:
        for c, v in self.pairs():
            if not self.is_fresh(c, v):
                self.reporter.message(f"lock {c.name}/{v.name} is stale: re-locking")
                self.lock(c.name, v.name)

    # --- stage 2 ------------------------------------------------------------

    def settings(self, variant: Variant, node: g.Node) -> Settings:
        return effective_settings(
            variant=variant, override=self.project.overrides.get(node.name), version=node.version
        )

    def inputs(self, variant: Variant, node: g.Node) -> BuildInputs:
        patches = find_patches(self.root, node.name, node.version, variant.name)
        return BuildInputs(
            settings=self.settings(variant, node).to_json(),
            patches=patch_hashes(self.root, patches),
        )

    @cached_property
    def locked(self) -> list[LockedVariant]:
        out = []
        for c, v in self.pairs():
            graph = read_lock(
                LockPaths.of(self.root, c.name, v.name).graph, memo=self.build_dir / "validated"
            )
            if graph is None:
                continue
            keys = build_keys(graph, partial(self.inputs, v))
            out.append(LockedVariant(c, v, graph, keys))
        return out

    def task_name(self, variant: str, node: g.Node) -> str:
        return f"{variant}:{node.name}-{node.version}"

    def wheel_of(self, key: BuildKey) -> Path:
        entry = self.cache.get(key)
        if entry is None:
            raise AffineurError(
                "a build-environment wheel is missing from the cache",
                stage="build-env",
                hint=f"build/cache/{key} is gone: run doit again",
            )
        return entry.wheel

    def build(self, lv: LockedVariant, node_key: g.NodeKey) -> None:
        node = lv.graph.nodes[node_key]
        key = lv.keys[node_key]
        with self.attempts.attempt(
            key=key,
            name=node.name,
            version=node.version,
            variant=lv.variant.name,
            index=self.client(lv.variant),
        ) as attempt:
            if self.cache.get(key) is not None:
                attempt.reused()
                return
            if node.prebuilt:
                self._take_prebuilt(lv, node, key)
                return
            self.reporter.message(f"build {node.name}=={node.version} ({lv.variant.name})")
            request = BuildRequest(
                node=node,
                key=key,
                variant=lv.variant.name,
                target=lv.graph.target,
                settings=self.settings(lv.variant, node),
                patches=find_patches(self.root, node.name, node.version, lv.variant.name),
                env_wheels=[self.wheel_of(lv.keys[k]) for k in node.build_env],
                network_isolation=lv.variant.network_isolation,
            )
            attempt.log = self.builder.failed_log(request)
            entry = self.builder.build(request, lv.graph)
            self.reporter.message(f"built {entry.wheel.name}")

    def _take_prebuilt(self, lv: LockedVariant, node: g.Node, key: BuildKey) -> None:
        assert node.wheel is not None
        path = self.store.ensure(
            node.name, node.wheel.filename, node.wheel.sha256, self.client(lv.variant)
        )
        with self.cache.staging(key) as staging:
            shutil.copyfile(path, staging / node.wheel.filename)
            self.cache.commit(
                key,
                staging,
                {
                    "name": node.name,
                    "version": node.version,
                    "build_key": key,
                    "prebuilt": True,
                    "wheel": node.wheel.filename,
                    "sha256": node.wheel.sha256,
                },
            )

    def download(self, lv: LockedVariant, node: g.Node, ref: g.FileRef) -> None:
        template = None if node.prebuilt else self.settings(lv.variant, node).download_source
        client = self.client(lv.variant)
        fetcher: Fetcher = client
        if template:
            fetcher = UrlSource(client, source_url(template, node.name, node.version), node.name)
        self.store.ensure(node.name, ref.filename, ref.sha256, fetcher)

    def publish(self, lv: LockedVariant) -> Path:
        wheels = {k: self.wheel_of(lv.keys[k]) for k in lv.graph.nodes}
        dest = self.root / "dist" / lv.collection.name / lv.variant.name
        simple = publish_index(wheels, dest)
        self.reporter.message(f"published {len(wheels)} wheels to {simple}")
        refuse_substitutes([self.cache.entry(lv.keys[k]) for k in lv.graph.nodes], str(simple))
        return simple

    # --- task creators ------------------------------------------------------

    def _loading(self, creator: Callable[[], Iterator[TaskDict]]) -> Iterator[TaskDict]:
        try:
            # Only a run re-locks while loading: `doit list` or `doit info` must stay
            # read-only and never touch the network.
            if run_command_active():
                self.relock_stale()
            yield from creator()
        except AffineurError as exc:
            if run_command_active():
                write_load_failure(exc, self.build_dir / "reports", test_mode=self.test_mode)
            hint = f"\nhint: {exc.hint}" if exc.hint else ""
            causes = "".join(f"\n  {c}" for c in exc.causes)
            raise InvalidDodoFile(f"{exc.one_line()}{causes}{hint}") from None

    def lock_tasks(self) -> Iterator[TaskDict]:
        def create() -> Iterator[TaskDict]:
            for c, v in self.pairs():
                yield {
                    "basename": "lock",
                    "name": f"{c.name}:{v.name}",
                    "doc": f"lock collection {c.name} for variant {v.name}",
                    "actions": [(guarded(self.lock), [c.name, v.name])],
                    "uptodate": [partial(self.is_fresh, c, v)],
                    "targets": [str(LockPaths.of(self.root, c.name, v.name).graph)],
                    "verbosity": 2,
                }

        return self._loading(create)

    def download_tasks(self) -> Iterator[TaskDict]:
        def create() -> Iterator[TaskDict]:
            seen: set[str] = set()
            for lv in self.locked:
                for node in lv.graph.nodes.values():
                    ref = node.wheel if node.prebuilt else node.sdist
                    if ref is None or ref.filename in seen:
                        continue
                    seen.add(ref.filename)
                    yield {
                        "basename": "download",
                        "name": ref.filename,
                        "doc": f"download and verify {ref.filename}",
                        "actions": [(guarded(self.download), [lv, node, ref])],
                        "targets": [str(self.store.path(ref.filename))],
                        "uptodate": [True],
                        "meta": {"package": {"name": node.name, "version": node.version}},
                    }

        return self._loading(create)

    @cached_property
    def build_task_names(self) -> dict[BuildKey, str]:
        """The build task of each build key: ``<variant>:<name>-<version>``.

        Two collections that lock the same name==version for a variant share its
        task when its build key is the same; a different key (another build
        environment) gets its own task, marked with the key's start.
        """
        names: dict[BuildKey, str] = {}
        taken: set[str] = set()
        for lv in self.locked:
            for key in sorted(lv.graph.nodes):
                build_key = lv.keys[key]
                if build_key in names:
                    continue
                name = self.task_name(lv.variant.name, lv.graph.nodes[key])
                if name in taken:
                    name = f"{name}@{build_key[:8]}"
                taken.add(name)
                names[build_key] = name
        return names

    def build_tasks(self) -> Iterator[TaskDict]:
        def create() -> Iterator[TaskDict]:
            emitted: set[BuildKey] = set()
            for lv in self.locked:
                for key in sorted(lv.graph.nodes):
                    node = lv.graph.nodes[key]
                    if lv.keys[key] in emitted:
                        continue  # the same build, locked by another collection
                    emitted.add(lv.keys[key])
                    name = self.build_task_names[lv.keys[key]]
                    ref = node.wheel if node.prebuilt else node.sdist
                    assert ref is not None
                    patches = find_patches(self.root, node.name, node.version, lv.variant.name)
                    deps = [self.build_task_names[lv.keys[k]] for k in node.build_env]
                    resources = dict(self.settings(lv.variant, node).resources) or {"cpu": 1}
                    yield {
                        "basename": "build",
                        "name": name,
                        "doc": f"build {node.name}=={node.version} for {lv.variant.name}",
                        "actions": [(guarded(self.build), [lv, key])],
                        "file_dep": [str(self.store.path(ref.filename)), *map(str, patches)],
                        "task_dep": [f"build:{d}" for d in deps],
                        "targets": [str(self.cache.entry(lv.keys[key]).record_path)],
                        "uptodate": [
                            config_changed(lv.keys[key]),
                            (trusted, [self.cache, lv.keys[key]]),
                        ],
                        "meta": {
                            "resources": {} if node.prebuilt else resources,
                            "package": {
                                "name": node.name,
                                "version": node.version,
                                "variant": lv.variant.name,
                                "key": lv.keys[key],
                                "prebuilt": node.prebuilt,
                            },
                        },
                    }

        return self._loading(create)

    def publish_tasks(self) -> Iterator[TaskDict]:
        def create() -> Iterator[TaskDict]:
            for lv in self.locked:
                deps = sorted({self.build_task_names[k] for k in lv.keys.values()})
                dest = self.root / "dist" / lv.collection.name / lv.variant.name
                yield {
                    "basename": "publish",
                    "name": f"{lv.collection.name}:{lv.variant.name}",
                    "doc": f"publish the index of {lv.collection.name} for {lv.variant.name}",
                    "actions": [(guarded(self.publish), [lv])],
                    "task_dep": [f"build:{d}" for d in deps],
                    "targets": [str(dest / "simple" / "index.html")],
                    "uptodate": [
                        config_changed(" ".join(sorted(lv.keys.values()))),
                        *[(trusted, [self.cache, k]) for k in sorted(set(lv.keys.values()))],
                    ],
                }

        return self._loading(create)

    def capacities(self) -> dict[str, float]:
        """The largest capacity any variant gives each resource (one machine runs them all).

        Every build takes one ``cpu`` unless its settings say otherwise, so ``cpu``
        defaults to this machine's processors.
        """
        out: dict[str, float] = {"cpu": float(os.cpu_count() or 1)}
        for variant in self.project.variants.values():
            for name, amount in variant.resources.items():
                out[name] = max(out.get(name, 0), float(amount))
        return out
