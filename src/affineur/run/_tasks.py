"""doit tasks, generated from the checked-in locks at load time.

The dodo file forwards to a :class:`DoitTasks`; each creator returns plain task
dicts whose actions call a :class:`~affineur.run._checkout.Checkout`, so ``doit
list``, ``doit info`` and ``doit forget`` see every package, and the same code
runs under doit, under the ``affineur`` command and in tests.

Task groups::

    lock:<collection>:<variant>       up to date while the lock's input hash matches
    download:<file>                   an sdist (or a prebuilt wheel), verified on use
    build:<variant>:<name>-<version>  one wheel into build/cache/<build-key>/
    publish:<collection>:<variant>    dist/<collection>/<variant>/simple/ from the cache
    verify:<variant>:<name>-<version> rebuild differently and compare (not run by default)

``doit clean`` removes what the build and publish tasks made (and, asked for
by name or with ``--clean-all``, the downloads); never a lock, which is the
checkout's source rather than a product. ``doit forget`` of a build task makes
the next run build it again instead of reusing its cache entry.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from affineur import graph as g
from affineur.build import BuildKey
from affineur.errors import AffineurError
from affineur.progress import FanOut, StreamReporter
from affineur.run._checkout import Checkout, LockedVariant
from affineur.run._context import RunContext, current_run
from affineur.run._dask import Executors
from affineur.run._doit import (
    action,
    config_changed,
    doit_config,
    keep_going_from_doit,
    load_error,
)
from affineur.run._doit_reporter import progress_reporter
from affineur.run._noop import write_stamp
from affineur.run._open import open_checkout
from affineur.run._report_files import write_load_failure
from affineur.run._substitution import trusted

__all__ = ["DoitTasks", "TaskDict", "build_task_names", "doit_tasks"]

TaskDict = dict[str, Any]

CLUSTER_THREADS = 32
"""doit's default -n when builds go to a cluster."""


def crate_trees(store: Path, node: g.Node) -> list[str]:
    """Where the node's vendored crates live (see pep517's CrateStore), when it has any."""
    if node.crates is None or node.prebuilt:
        return []
    return [str(store / "crates" / node.crates.sha256)]


def build_task_names(locked: list[LockedVariant]) -> dict[BuildKey, str]:
    """The build task of each build key: ``<variant>:<name>-<version>``.

    Two collections that lock the same name==version for a variant share its
    task when its build key is the same; a different key (another build
    environment) gets its own task, marked with the key's start.
    """
    names: dict[BuildKey, str] = {}
    taken: set[str] = set()
    for lv in locked:
        for key in sorted(lv.graph.nodes):
            build_key = lv.keys[key]
            if build_key in names:
                continue
            node = lv.graph.nodes[key]
            name = f"{lv.variant.name}:{node.name}-{node.version}"
            if name in taken:
                name = f"{name}@{build_key[:8]}"
            taken.add(name)
            names[build_key] = name
    return names


@dataclass
class DoitTasks:
    """The task creators of one checkout, for the dodo file's ``task_*`` functions."""

    checkout: Checkout
    context: RunContext
    _names: tuple[int, dict[BuildKey, str]] | None = field(default=None, repr=False)

    def config(self, **extra: Any) -> dict[str, Any]:
        """``DOIT_CONFIG``: the adapter's settings, this run's reporter, ``continue`` if asked."""
        if self._on_cluster():
            # Each build on a cluster occupies a doit thread that only waits for it:
            # many threads, so the cluster, not doit, bounds the parallelism.
            extra.setdefault("num_process", CLUSTER_THREADS)
        config = doit_config(self._capacities, root=self.checkout.root, **extra)
        if self.context.running:
            # The run holds the checkout now: what killed runs left can go.
            self.checkout.sweep()
        try:
            config["reporter"] = progress_reporter(
                self.context, reports_dir=self.checkout.reports_dir
            )
        except AffineurError as exc:
            raise load_error(exc) from None
        if self.context.keep_going:
            config["continue"] = True
        return config

    def _on_cluster(self) -> bool:
        try:
            variants = list(self.checkout.project.variants.values())
            return any(self.checkout.clusters(v) is not None for v in variants)
        except AffineurError:
            return False  # reported where the tasks are made

    def _capacities(self) -> dict[str, float]:
        # doit reads these (and so the config) before any task creator runs: a
        # broken config must still make this run's report say it failed.
        try:
            return self.checkout.capacities()
        except AffineurError as exc:
            if self.context.running:
                write_load_failure(
                    exc, self.checkout.reports_dir, keep_going=self.context.keep_going
                )
            raise

    @property
    def names(self) -> dict[BuildKey, str]:
        # Keyed by the identity of the locks read, which a re-lock replaces.
        locked = self.checkout.locked
        if self._names is None or self._names[0] != id(locked):
            self._names = (id(locked), build_task_names(locked))
        return self._names[1]

    def _loading(self, creator: Callable[[], Iterator[TaskDict]]) -> Iterator[TaskDict]:
        try:
            # Only a run re-locks while loading: `doit list` or `doit info` must stay
            # read-only and never touch the network.
            if self.context.running:
                self.checkout.relock_stale()
            yield from creator()
        except AffineurError as exc:
            if self.context.running:
                write_load_failure(
                    exc, self.checkout.reports_dir, keep_going=self.context.keep_going
                )
            raise load_error(exc) from None

    def lock(self) -> Iterator[TaskDict]:
        checkout = self.checkout

        def create() -> Iterator[TaskDict]:
            for c, v in checkout.pairs():
                yield {
                    "basename": "lock",
                    "name": f"{c.name}:{v.name}",
                    "doc": f"lock collection {c.name} for variant {v.name}",
                    "actions": [(action(checkout.lock), [c.name, v.name])],
                    "uptodate": [partial(checkout.is_fresh, c, v)],
                    "targets": [str(checkout.lock_paths(c.name, v.name).graph)],
                    "verbosity": 2,
                }

        return self._loading(create)

    def download(self) -> Iterator[TaskDict]:
        checkout = self.checkout

        def create() -> Iterator[TaskDict]:
            seen: set[str] = set()
            for lv in checkout.locked:
                for node in lv.graph.nodes.values():
                    ref = node.wheel if node.prebuilt else node.sdist
                    if ref is None or ref.filename in seen:
                        continue
                    seen.add(ref.filename)
                    yield {
                        "basename": "download",
                        "name": ref.filename,
                        "doc": f"download and verify {ref.filename}",
                        "actions": [(action(checkout.download), [lv, node, ref])],
                        # A missing vendored-crates tree is fetched again, like the sdist.
                        "targets": [
                            str(checkout.store.path(ref.filename)),
                            *crate_trees(checkout.store.root, node),
                        ],
                        "clean": [(checkout.clean_download, [ref.filename])],
                        "uptodate": [True],
                        "meta": {"package": {"name": node.name, "version": node.version}},
                    }

        return self._loading(create)

    def build(self) -> Iterator[TaskDict]:
        checkout = self.checkout

        def create() -> Iterator[TaskDict]:
            emitted: set[BuildKey] = set()
            names = self.names
            for lv in checkout.locked:
                checkout.remotes(lv.variant)  # a bad setting stops the run before any build
                for key in sorted(lv.graph.nodes):
                    if lv.keys[key] in emitted:
                        continue  # the same build, locked by another collection
                    emitted.add(lv.keys[key])
                    yield self._build_task(lv, key, names)

        return self._loading(create)

    def _build_task(
        self, lv: LockedVariant, key: g.NodeKey, names: dict[BuildKey, str]
    ) -> TaskDict:
        checkout = self.checkout
        node = lv.graph.nodes[key]
        build_key = lv.keys[key]
        ref = node.wheel if node.prebuilt else node.sdist
        assert ref is not None
        patches = checkout.patches(lv.variant, node)
        # A build sent to a cluster holds nothing here: the cluster counts its resources.
        remote = checkout.clusters(lv.variant) is not None
        resources = {} if node.prebuilt or remote else checkout.demand(lv.variant, node)
        return {
            "basename": "build",
            "name": names[build_key],
            "doc": f"build {node.name}=={node.version} for {lv.variant.name}",
            "actions": [(action(checkout.build), [lv, key])],
            "file_dep": [str(checkout.store.path(ref.filename)), *map(str, patches)],
            "task_dep": [f"build:{names[lv.keys[k]]}" for k in node.build_env],
            "targets": [str(checkout.cache.entry(build_key).record_path)],
            "clean": [(checkout.clean_build, [build_key])],
            "uptodate": [config_changed(build_key), (trusted, [checkout.cache, build_key])],
            "meta": {
                "resources": resources,
                "package": {
                    "name": node.name,
                    "version": node.version,
                    "variant": lv.variant.name,
                    "key": build_key,
                    "prebuilt": node.prebuilt,
                },
            },
        }

    def publish(self) -> Iterator[TaskDict]:
        checkout = self.checkout

        def create() -> Iterator[TaskDict]:
            names = self.names
            for lv in checkout.locked:
                deps = sorted({names[k] for k in lv.keys.values()})
                dest = checkout.dist_dir(lv.collection.name, lv.variant.name)
                yield {
                    "basename": "publish",
                    "name": f"{lv.collection.name}:{lv.variant.name}",
                    "doc": f"publish the index of {lv.collection.name} for {lv.variant.name}",
                    "actions": [(action(checkout.publish), [lv])],
                    "task_dep": [f"build:{d}" for d in deps],
                    "targets": [str(dest / "simple" / "index.html")],
                    "clean": [(checkout.clean_published, [lv.collection.name, lv.variant.name])],
                    "uptodate": [
                        config_changed(
                            " ".join([*sorted(lv.keys.values()), checkout.signing_key_id()])
                        ),
                        *[(trusted, [checkout.cache, k]) for k in sorted(set(lv.keys.values()))],
                        (checkout.published_whole, [lv]),
                    ],
                }

        return self._loading(create)

    def verify(self) -> Iterator[TaskDict]:
        """``verify:<variant>:<name>-<version>``: rebuild under varied conditions, compare.

        Never up to date and not among the default tasks: verification is asked for.
        """
        checkout = self.checkout

        def create() -> Iterator[TaskDict]:
            if self.context.running and not any(
                word.startswith("verify") or any(c in word for c in "*?[")
                for word in self.context.selected
            ):
                # A run that does not ask for verification need not load its tasks: on
                # a large lock they cost a good part of a no-op run. `doit list` and
                # `doit info` (not runs) still see every one.
                return
            names = self.names
            capacity = checkout.capacities()
            emitted: set[BuildKey] = set()
            for lv in checkout.locked:
                for key in sorted(lv.graph.nodes):
                    node = lv.graph.nodes[key]
                    if node.prebuilt or lv.keys[key] in emitted:
                        continue
                    emitted.add(lv.keys[key])
                    name = names[lv.keys[key]]
                    # A rebuild runs on this machine even for a variant that builds on a
                    # cluster: it holds what a build would, within what this machine has,
                    # so a GPU build's verification never stops the loading of every task.
                    resources = {
                        k: v if k == "exclusive" else min(float(v), capacity[k])
                        for k, v in checkout.demand(lv.variant, node).items()
                        if k == "exclusive" or k in capacity
                    }
                    yield {
                        "basename": "verify",
                        "name": name,
                        "doc": f"rebuild {node.name}=={node.version} differently; compare bytes",
                        "actions": [(action(verify_task), [checkout, lv, key])],
                        "task_dep": [f"build:{name}"],
                        "uptodate": [False],
                        "verbosity": 2,
                        "meta": {
                            "resources": resources,
                            "package": {
                                "name": node.name,
                                "version": node.version,
                                "variant": lv.variant.name,
                            },
                        },
                    }

        return self._loading(create)


def verify_task(checkout: Checkout, lv: LockedVariant, node_key: g.NodeKey) -> None:
    """Rebuild the package differently and compare the wheels (see affineur.run._verify)."""
    # Every run makes the verify tasks, few run one: the builder loads when one does.
    from affineur.run._verify import verify_task as verify

    verify(checkout, lv, node_key)


def doit_tasks(root: Path) -> DoitTasks:
    """The tasks of the checkout at ``root``, for a dodo file (see the module docstring)."""
    context = current_run()
    context.keep_going = keep_going_from_doit()
    clusters = Executors(os.environ, context.executor)
    checkout = open_checkout(
        root,
        keep_going=context.keep_going,
        reporter=FanOut(StreamReporter(), context.recorder),
        clusters=clusters,
    )
    clusters.reporter = checkout.reporter
    context.request_rebuild = checkout.request_rebuild
    context.root = checkout.root
    context.write_stamp = lambda key, summary, before: write_stamp(
        checkout, key, summary, before=before
    )
    # Ending the run, Ctrl-C included, cancels what it left running on a cluster.
    context.held.callback(clusters.close)
    return DoitTasks(checkout, context)
