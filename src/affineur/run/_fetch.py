"""Getting a node's files onto this machine: its sdist, its vendored crates, a prebuilt wheel.

Every file is checked against the lock as it lands, so whatever fetched it (the
index, a URL template, a git archive, a site plugin) cannot slip other bytes into
a build. A no-op run fetches nothing: this module loads only when a download or
a prebuilt wheel is due, and what only crates, site plugins or prebuilt wheels
need loads only for them.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from affineur import graph as g
from affineur.build import BuildCache, BuildKey
from affineur.errors import AffineurError
from affineur.index import (
    GitSource,
    SdistStore,
    UrlSource,
    check_attestation,
    source_url,
)
from affineur.lock import git_location
from affineur.progress import Notice, Reporter

if TYPE_CHECKING:
    from affineur.build import CacheEntry
    from affineur.config import Settings, Variant
    from affineur.index import Fetcher, IndexClient

__all__ = ["download", "take_prebuilt"]


def download(
    store: SdistStore,
    settings: Settings,
    client: IndexClient,
    variant: Variant,
    node: g.Node,
    ref: g.FileRef,
    reporter: Reporter,
) -> None:
    """Fetch the node's sdist (or prebuilt wheel) into the store, checked against the lock."""
    template = None if node.prebuilt else settings.download_source
    fetcher: Fetcher = client
    if template:
        fetcher = UrlSource(client, source_url(template, node.name, node.version), node.name)
    elif node.git is not None and not node.prebuilt:
        # The lock's commit, archived again here; the store holds it to the lock's hash.
        # The override's URL, not the lock's: the lock never records credentials.
        url = git_location(settings.git, node.name, node.version)[0] if settings.git else ""
        fetcher = GitSource(
            canonicalize_name(node.name), node.version, url or node.git.url,
            node.git.ref, node.git.commit,
        )  # fmt: skip
    if settings.plugin and not node.prebuilt:
        from affineur.hooks import load_hooks
        from affineur.index import PluginFetcher

        hooks = load_hooks(settings.plugin)
        fetcher = PluginFetcher(hooks, canonicalize_name(node.name), node.version, fetcher)
    path = store.ensure(node.name, ref.filename, ref.sha256, fetcher)
    if node.crates is not None and not node.prebuilt:
        _vendor(store, variant, node, path)
    if ref.attested_by and not template:
        warning = check_attestation(client, node.name, ref)
        if warning:
            reporter.report(Notice(warning, warning=True))


def _vendor(store: SdistStore, variant: Variant, node: g.Node, sdist: Path) -> None:
    """Vendor the node's crates again where this machine lacks them (a fresh clone)."""
    from affineur.pep517 import CrateStore, crates_registry

    assert node.crates is not None and node.sdist is not None
    crates = CrateStore(store.root / "crates")
    if crates.tree(node.crates.sha256).is_dir():
        return
    index = crates_registry(variant.crates_index) if variant.crates_index else None
    got = crates.vendor(node.name, sdist, node.sdist.sha256, registry=index)
    if got is None or got.sha256 != node.crates.sha256:
        raise AffineurError(
            "the crates vendored now differ from the lock's",
            package=node.name,
            version=node.version,
            stage="hash",
            causes=(f"the lock: {node.crates.sha256}", f"now: {got.sha256 if got else None}"),
            hint="the crates registry serves other bytes than when the lock was made; "
            "re-lock ('affineur lock --force') to accept them",
        )


def take_prebuilt(
    store: SdistStore,
    cache: BuildCache,
    client: IndexClient,
    node: g.Node,
    target: Mapping[str, str],
    key: BuildKey,
) -> CacheEntry:
    """Put the node's upstream wheel into the cache under ``key``, checked against the lock."""
    from affineur.build import wheel_problems

    assert node.wheel is not None
    path = store.ensure(node.name, node.wheel.filename, node.wheel.sha256, client)
    problems = wheel_problems(path, node, target)
    if problems:
        raise AffineurError(
            f"the locked wheel {path.name} is not what the lock says",
            stage="verify",
            causes=tuple(problems),
        )
    with cache.staging(key) as staging:
        shutil.copyfile(path, staging / node.wheel.filename)
        return cache.commit(
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
