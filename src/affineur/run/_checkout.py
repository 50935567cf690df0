"""The checkout: its config, locks, build keys and paths, and the actions of each stage.

Nothing here knows doit. The doit task creators (:mod:`affineur.run._tasks`)
and the ``affineur`` command both drive a :class:`Checkout`, and tests can too,
so one action runs the same way everywhere.

A checkout does no I/O of its own making: the sdist store, the build cache, the
builder, the index clients, the reporter and the record of build attempts are
passed in. :func:`~affineur.run._open.open_checkout` is the one place that makes
the usual ones for a checkout folder. The longer actions live beside it:
fetching sources and prebuilt wheels (:mod:`affineur.run._fetch`) and building
on a cluster (:mod:`affineur.run._cluster`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from affineur import graph as g
from affineur.build import (
    BuildCache,
    BuildInputs,
    BuildKey,
    build_keys,
    sbom_key_input,
    sweep_dead_folders,
    sweep_stale_publishes,
)
from affineur.config import (
    effective_settings,
    find_patches,
    load_project,
    patch_hashes,
)
from affineur.errors import AffineurError
from affineur.index import SdistStore, sha256_file
from affineur.lock import LockPaths, lock_is_fresh, read_lock
from affineur.pep517 import Interpreter, interpreter_of
from affineur.progress import (
    BuildStarted,
    LockStale,
    Published,
    Rebuilt,
    Reporter,
)
from affineur.run._substitution import Attempts, refuse_substitutes

# A no-op run reads the config and the locks, computes build keys and asks the
# cache; it never builds, locks, fetches or publishes. What only those actions use
# (the builder with pep517 and installer, the locker with resolvelib, the index
# client, the remote cache, the cluster) is imported where it is used, not here.
if TYPE_CHECKING:
    from affineur.build import Builder, BuildRequest, CacheEntry, RemoteCache
    from affineur.config import Collection, Project, Settings, Variant
    from affineur.index import IndexClient
    from affineur.run._cluster import Cluster

__all__ = ["Checkout", "LockedVariant"]


def _attestation(node: g.Node) -> dict[str, Any] | None:
    """The sdist's PEP 740 publishers as the lock recorded them, for provenance."""
    if node.sdist is None or not node.sdist.attested_by:
        return None
    return {"standard": "PEP 740", "publishers": [p.to_data() for p in node.sdist.attested_by]}


@dataclass(frozen=True)
class LockedVariant:
    """One lock as the build stage uses it: its graph and every node's build key."""

    collection: Collection
    variant: Variant
    graph: g.Graph
    keys: Mapping[g.NodeKey, BuildKey]


def no_remote_cache(variant: Variant) -> RemoteCache | None:
    return None


def no_host_tools() -> Mapping[str, str]:
    return {}


def this_machine(variant: Variant) -> Cluster | None:
    return None


@dataclass
class Checkout:
    """A checkout folder's config, locks and build keys, read once, and its stage actions.

    Stage 1 is :meth:`lock` (and :meth:`relock_stale`); stage 2 is
    :meth:`download`, :meth:`build` and :meth:`publish`. Each raises
    :class:`AffineurError` on a problem a user can act on.
    """

    root: Path
    store: SdistStore
    cache: BuildCache
    builders: Callable[[], Builder]
    """Makes the builder on first use: a run with nothing to build never loads it."""
    clients: Callable[[Variant], IndexClient]
    attempts: Attempts
    reporter: Reporter
    remotes: Callable[[Variant], RemoteCache | None] = no_remote_cache
    """The shared cache looked up before a build and filled after it (see build/_remote)."""
    clusters: Callable[[Variant], Cluster | None] = this_machine
    """Where each variant's builds run: None for this machine."""
    host_tools: Callable[[], Mapping[str, str]] = no_host_tools
    """The host tools a build can use, name -> version (see build/_hosttools), asked once."""
    signing_key: Path | None = None
    """The ed25519 private key that signs published provenance, if any."""

    @cached_property
    def builder(self) -> Builder:
        return self.builders()

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def reports_dir(self) -> Path:
        return self.build_dir / "reports"

    @cached_property
    def project(self) -> Project:
        return load_project(self.root, memo=self.build_dir / "validated")

    def pairs(self) -> list[tuple[Collection, Variant]]:
        """Every (collection, variant) the config asks to lock and build, in a stable order."""
        return [
            (c, self.project.variants[v])
            for c in sorted(self.project.collections.values(), key=lambda c: c.name)
            for v in c.variants
        ]

    def lock_paths(self, collection: str, variant: str) -> LockPaths:
        return LockPaths.of(self.root, collection, variant)

    def dist_dir(self, collection: str, variant: str) -> Path:
        """Where :meth:`publish` puts the collection's index for the variant."""
        return self.root / "dist" / collection / variant

    # --- stage 1 ------------------------------------------------------------

    def lock(
        self, collection: str, variant: str, upgrade: frozenset[str] | bool = frozenset()
    ) -> Path:
        """Lock one collection for one variant (network); the path of the new graph.json."""
        from affineur.lock import lock
        from affineur.run._source_builds import SourceModeBuilds

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
                patches=partial(self.patches, v),
                reporter=self.reporter,
                interpreter=self.interpreter(v),
            )
        paths = lock(
            self.project,
            c,
            v,
            client=self.clients(v),
            workdir=self.build_dir,
            reporter=self.reporter,
            upgrade=upgrade,
            builds=builds,
            interpreter=self.interpreter(v),
        )
        # What was derived from the old lock is stale now.
        self.__dict__.pop("locked", None)
        self._fresh.pop((collection, variant), None)
        return paths.graph

    _fresh: dict[tuple[str, str], bool] = field(default_factory=dict, init=False, repr=False)

    def is_fresh(self, collection: Collection, variant: Variant) -> bool:
        """Whether the lock matches its inputs; hashed once per run, not once per asker."""
        key = (collection.name, variant.name)
        if key not in self._fresh:
            self._fresh[key] = lock_is_fresh(self.project, collection, variant)
        return self._fresh[key]

    def relock_stale(self) -> None:
        for c, v in self.pairs():
            if not self.is_fresh(c, v):
                self.reporter.report(LockStale(c.name, v.name))
                self.lock(c.name, v.name)

    # --- stage 2 ------------------------------------------------------------

    _settings: dict[tuple[str, str, str], Settings] = field(
        default_factory=dict, init=False, repr=False
    )

    def settings(self, variant: Variant, node: g.Node) -> Settings:
        # Asked for each package by its build key, its download, build and publish
        # tasks and its resources: merged once per run, not once per asker.
        key = (variant.name, node.name, node.version)
        found = self._settings.get(key)
        if found is None:
            found = self._settings[key] = effective_settings(
                variant=variant, override=self.project.override_for(node.name), version=node.version
            )
        return found

    def patches(self, variant: Variant, node: g.Node) -> list[Path]:
        return find_patches(self.root, node.name, node.version, variant.name)

    @cached_property
    def tool_versions(self) -> Mapping[str, str]:
        return dict(self.host_tools())

    _interpreters: dict[str, Interpreter] = field(default_factory=dict, init=False, repr=False)

    def interpreter(self, variant: Variant) -> Interpreter:
        """The Python the variant builds with; an error naming the fix when there is none."""
        if variant.name not in self._interpreters:
            self._interpreters[variant.name] = interpreter_of(
                variant, memo=self.build_dir / "interpreters.json"
            )
        return self._interpreters[variant.name]

    def node_tools(self, variant: Variant, node: g.Node) -> Mapping[str, str]:
        """The host tools one build can use, with the site plugin that builds it."""
        # An upstream wheel taken as it is used no compiler of ours.
        if node.prebuilt:
            return {}
        plugin = self.settings(variant, node).plugin
        if not plugin:
            return self.tool_versions
        # A new release of the site's plugin rebuilds what it builds, like a new compiler.
        from affineur.hooks import load_hooks

        return {**self.tool_versions, f"plugin {plugin}": load_hooks(plugin).origin}

    def inputs(self, variant: Variant, node: g.Node) -> BuildInputs:
        return BuildInputs(
            settings=self.settings(variant, node).to_json(),
            patches=patch_hashes(self.root, self.patches(variant, node)),
            host_tools=self.node_tools(variant, node),
            sbom=sbom_key_input(variant.evidence),
            python="" if node.prebuilt else self.interpreter(variant).key(),
        )

    @cached_property
    def locked(self) -> list[LockedVariant]:
        """Every lock in the checkout with its build keys; a pair not yet locked is left out."""
        out = []
        for c, v in self.pairs():
            graph = read_lock(
                self.lock_paths(c.name, v.name).graph, memo=self.build_dir / "validated"
            )
            if graph is None:
                continue
            keys = build_keys(graph, partial(self.inputs, v))
            out.append(LockedVariant(c, v, graph, keys))
        return out

    def locked_variant(self, collection: str, variant: str) -> LockedVariant:
        for lv in self.locked:
            if lv.collection.name == collection and lv.variant.name == variant:
                return lv
        raise AffineurError(
            f"no lock of {collection}/{variant}",
            hint="check the names; 'doit lock' makes the lock, 'doit' builds the wheels",
            stage="lock",
        )

    def entry_of(self, key: BuildKey) -> CacheEntry:
        """The verified cache entry of ``key``; an error when it is missing or was damaged."""
        entry = self.cache.get(key)
        if entry is None:
            raise AffineurError(
                f"the wheel of build/cache/{key} is missing or damaged",
                stage="build-env",
                hint="run doit again: it is built again first",
            )
        return entry

    def wheel_of(self, key: BuildKey) -> Path:
        return self.entry_of(key).wheel

    def sweep(self) -> list[Path]:
        """Remove what killed runs left: work folders, discovery scratch, cache staging,
        half-published indexes. Cheap (a few folder listings), so every run does it."""
        self.cache.discard_stale_staging()
        return [
            *sweep_dead_folders(self.build_dir / "work"),
            *sweep_dead_folders(self.build_dir / "discovery" / "calls"),
            *sweep_stale_publishes(self.root / "dist"),
        ]

    def build_request(self, lv: LockedVariant, node_key: g.NodeKey) -> BuildRequest:
        """What building the node takes, from the lock, the config and the cache."""
        from affineur.build import BuildRequest

        node = lv.graph.nodes[node_key]
        return BuildRequest(
            node=node,
            key=lv.keys[node_key],
            variant=lv.variant.name,
            target=lv.graph.target,
            settings=self.settings(lv.variant, node),
            patches=self.patches(lv.variant, node),
            env_wheels=[self.wheel_of(lv.keys[k]) for k in node.build_env],
            network_isolation=lv.variant.network_isolation,
            host_tools=self.node_tools(lv.variant, node),
            sandbox=lv.variant.sandbox,
            evidence=lv.variant.evidence,
            env_keys=[lv.keys[k] for k in node.build_env],
            source_attestation=_attestation(node),
            jobs=self.jobs(lv.variant, node),
            interpreter=self.interpreter(lv.variant),
        )

    def build(self, lv: LockedVariant, node_key: g.NodeKey) -> Rebuilt | None:
        """Put the node's wheel into the cache under its build key (built, reused or taken).

        A build asked for again (:meth:`request_rebuild`) does not reuse its cache
        entry: it builds, and returns how the new wheel compares with the old one.
        """
        node = lv.graph.nodes[node_key]
        key = lv.keys[node_key]
        marker = self._rebuild_marker(key)
        if not marker.exists():
            self._build(lv, node_key, forced=False)
            return None
        previous = self._set_aside(key)
        try:
            self._build(lv, node_key, forced=True)
        except BaseException:
            if previous is not None and self.cache.get(key) is None:
                previous[0].rename(self.cache.entry(key).path)  # the old wheel stays usable
            raise
        finally:
            old_sha = sha256_file(previous[1]) if previous and previous[1].exists() else None
            if previous is not None:
                shutil.rmtree(previous[0].parent, ignore_errors=True)
        event = Rebuilt(
            node.name,
            node.version,
            lv.variant.name,
            key,
            sha256=sha256_file(self.entry_of(key).wheel),
            previous_sha256=old_sha,
        )
        marker.unlink(missing_ok=True)
        self.reporter.report(event)
        return event

    def _rebuild_marker(self, key: BuildKey) -> Path:
        return self.build_dir / "rebuild" / key

    def request_rebuild(self, keys: Iterable[str]) -> None:
        """Build these keys again the next time they are built, instead of reusing them.

        A marker file per key: ``doit forget`` leaves one for the next ``doit``.
        """
        for key in keys:
            marker = self._rebuild_marker(BuildKey(key))
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()

    def _set_aside(self, key: BuildKey) -> tuple[Path, Path] | None:
        """Move the entry of ``key`` out of the cache: (the entry's new place, its wheel)."""
        entry = self.cache.get(key)
        if entry is None:
            return None
        name = entry.wheel.name
        aside = Path(tempfile.mkdtemp(prefix=f".previous-{key[:16]}-", dir=self.cache.root))
        entry.path.rename(aside / "entry")
        return aside / "entry", aside / "entry" / name

    def _build(self, lv: LockedVariant, node_key: g.NodeKey, *, forced: bool) -> None:
        node = lv.graph.nodes[node_key]
        key = lv.keys[node_key]
        with self.attempts.attempt(
            key=key,
            name=node.name,
            version=node.version,
            variant=lv.variant.name,
            index=self.clients(lv.variant),
            tags=None if node.prebuilt else self.interpreter(lv.variant).tags,
        ) as attempt:
            remote = self.remotes(lv.variant)
            local = self.cache.get(key)
            if local is not None:
                attempt.reused()
                if remote is not None:
                    remote.push(local)  # seeds the remote from a cache filled before it existed
                return
            if (
                not forced
                and remote is not None
                and remote.fetch(key, self.cache, name=node.name, version=node.version)
            ):
                attempt.reused_remote()
                return
            if node.prebuilt:
                from affineur.run._fetch import take_prebuilt

                entry = take_prebuilt(
                    self.store, self.cache, self.clients(lv.variant), node, lv.graph.target, key
                )
                attempt.outcome, attempt.wheel = "prebuilt", entry.wheel.name
                if remote is not None:
                    remote.push(entry)
                return
            cluster = self.clusters(lv.variant)
            if cluster is not None:
                attempt.log = self._build_log(lv, node)
                attempt.wheel, attempt.where = self._build_on(
                    cluster, remote, lv, node, key, attempt.log
                )
                return
            self.reporter.report(BuildStarted(node.name, node.version, lv.variant.name, key))
            request = self.build_request(lv, node_key)
            attempt.log = self.builder.failed_log(request)
            entry = self.builder.build(request, lv.graph)
            attempt.wheel = entry.wheel.name
            if remote is not None:
                remote.push(entry)

    def demand(self, variant: Variant, node: g.Node) -> dict[str, Any]:
        """The resources a build holds while it runs: its settings', else one cpu."""
        return dict(self.settings(variant, node).resources) or {"cpu": 1}

    def jobs(self, variant: Variant, node: g.Node) -> int:
        """How many compiler processes the build may run: the cpus it holds while it runs.

        An exclusive build holds the whole machine; a fraction of a cpu is still one job.
        """
        demand = self.demand(variant, node)
        if demand.get("exclusive") and "cpu" not in demand:
            return max(1, int(self.capacities()["cpu"]))
        return max(1, int(float(demand.get("cpu", 1))))

    def _build_log(self, lv: LockedVariant, node: g.Node) -> Path:
        return self.build_dir / "logs" / lv.variant.name / f"{node.name}-{node.version}.log"

    def _build_on(
        self,
        cluster: Cluster,
        remote: RemoteCache | None,
        lv: LockedVariant,
        node: g.Node,
        key: BuildKey,
        log: Path,
    ) -> tuple[str, str]:
        """Build on a cluster (see :mod:`affineur.run._cluster`): the wheel's name, the worker."""
        from affineur.run._cluster import build_on

        return build_on(
            cluster,
            remote,
            variant=lv.variant,
            graph=lv.graph,
            keys=lv.keys,
            node=node,
            key=key,
            log=log,
            store=self.store,
            cache=self.cache,
            settings=self.settings(lv.variant, node),
            patches=self.patches(lv.variant, node),
            python_key=self.interpreter(lv.variant).key(),
            jobs=self.jobs(lv.variant, node),
            resources=self.demand(lv.variant, node),
            source_attestation=_attestation(node),
            reporter=self.reporter,
        )

    def download(self, lv: LockedVariant, node: g.Node, ref: g.FileRef) -> None:
        """Fetch the node's sdist (or prebuilt wheel) into the store, checked against the lock."""
        from affineur.run._fetch import download

        download(
            self.store,
            self.settings(lv.variant, node),
            self.clients(lv.variant),
            lv.variant,
            node,
            ref,
            self.reporter,
        )

    def signing_key_id(self) -> str:
        """The DSSE key id published provenance is signed with ('' when unsigned)."""
        from affineur.build import signing_key_id

        return signing_key_id(self.signing_key) if self.signing_key is not None else ""

    def published_whole(self, lv: LockedVariant) -> bool:
        """For the publish task's ``uptodate``: the variant's index still holds every wheel."""
        from affineur.build import index_holds

        wheels = []
        for key in sorted(set(lv.keys.values())):
            wheel = self.cache.verified_wheel(key)
            if wheel is None:
                return False
            wheels.append(wheel)
        return index_holds(self.dist_dir(lv.collection.name, lv.variant.name), wheels)

    def publish(self, lv: LockedVariant) -> Path:
        """Write the variant's PEP 503 index from the cache; refuse one holding substitutes."""
        from affineur.build import publish_index

        entries = {k: self.entry_of(lv.keys[k]) for k in lv.graph.nodes}
        dest = self.dist_dir(lv.collection.name, lv.variant.name)
        simple = publish_index(entries, dest, sign_with=self.signing_key)
        # Provenance statements lie beside the wheels: count the wheels only.
        count = sum(1 for _ in (dest / "files").glob("*.whl"))
        self.reporter.report(Published(lv.collection.name, lv.variant.name, simple, count))
        refuse_substitutes([self.cache.entry(lv.keys[k]) for k in lv.graph.nodes], str(simple))
        return simple

    # --- forcing and cleaning ---------------------------------------------------

    def rebuild(self, name: str, variants: Iterable[str] = ()) -> list[Rebuilt]:
        """Build every locked build of ``name`` again (in ``variants``, default all).

        Its build environment is built first where the cache lacks it; indexes
        already published that hold it are published again, with the new wheel.
        """
        wanted, only = canonicalize_name(name), set(variants)
        chosen: dict[BuildKey, tuple[LockedVariant, g.NodeKey]] = {}
        for lv in self.locked:
            if only and lv.variant.name not in only:
                continue
            for node_key, node in sorted(lv.graph.nodes.items()):
                if canonicalize_name(node.name) == wanted:
                    chosen.setdefault(lv.keys[node_key], (lv, node_key))
        if not chosen:
            where = f" for {', '.join(sorted(only))}" if only else ""
            raise AffineurError(
                f"no lock{where} holds {name}",
                hint="'affineur why NAME' and 'affineur tree' show what the locks hold",
            )
        results = []
        for key, (lv, node_key) in chosen.items():
            self._ensure_built(lv, lv.graph.nodes[node_key].build_env)
            self._fetch(lv, lv.graph.nodes[node_key])
            self.request_rebuild([key])
            event = self.build(lv, node_key)
            assert event is not None
            results.append(event)
        for lv in self.locked:
            published = self.dist_dir(lv.collection.name, lv.variant.name) / "simple"
            touched = any(k in chosen for k in lv.keys.values())
            if touched and published.is_dir() and all(self.cache.get(k) for k in lv.keys.values()):
                self.publish(lv)
        return results

    def _ensure_built(self, lv: LockedVariant, wanted: Iterable[g.NodeKey]) -> None:
        """Build what ``wanted`` (and, first, their own build environments) lack."""
        needed: set[g.NodeKey] = set()
        todo = list(wanted)
        while todo:
            node_key = todo.pop()
            if node_key in needed or self.cache.get(lv.keys[node_key]) is not None:
                continue
            needed.add(node_key)
            todo.extend(lv.graph.nodes[node_key].build_env)
        for node_key in g.build_order({k: lv.graph.nodes[k] for k in needed}):
            self._fetch(lv, lv.graph.nodes[node_key])
            self.build(lv, node_key)

    def _fetch(self, lv: LockedVariant, node: g.Node) -> None:
        ref = node.wheel if node.prebuilt else node.sdist
        if ref is not None:
            self.download(lv, node, ref)

    def clean_build(self, key: BuildKey) -> None:
        """Remove the cache entry of ``key`` (``doit clean``): renamed away, then deleted."""
        entry = self.cache.entry(key)
        if entry.path.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".cleaned-{key[:16]}-", dir=self.cache.root))
            entry.path.rename(aside / "entry")
            shutil.rmtree(aside, ignore_errors=True)

    def clean_download(self, filename: str) -> None:
        self.store.path(filename).unlink(missing_ok=True)

    def clean_published(self, collection: str, variant: str) -> None:
        shutil.rmtree(self.dist_dir(collection, variant), ignore_errors=True)

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
