"""The usual collaborators of a checkout folder, and :func:`open_checkout` that makes them.

A :class:`~affineur.run._checkout.Checkout` is given its store, cache, builder,
index clients and remote caches rather than making them, so tests pass in their
own. What a real run passes lives here: the index clients and remote caches
made once per setting and shared by the variants that name it, and the folders
under ``root/build`` that hold the rest.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from affineur.build import BuildCache, BuildKey, HostTools
from affineur.config import default_index_url, effective_remote_cache
from affineur.errors import AffineurError
from affineur.index import SdistStore
from affineur.progress import CacheEntryDiscarded, Reporter, StreamReporter
from affineur.run._checkout import Checkout, this_machine
from affineur.run._substitution import Attempts

# Neither the builder, the index client nor the remote cache is loaded before a
# run needs one (see the note in affineur.run._checkout).
if TYPE_CHECKING:
    from affineur.build import Builder, RemoteCache
    from affineur.config import Variant
    from affineur.index import IndexClient
    from affineur.run._cluster import Cluster

__all__ = ["SIGNING_KEY_ENV", "IndexClients", "RemoteCaches", "open_checkout"]

# A path, never the key itself: the key stays in a file the user controls.
SIGNING_KEY_ENV = "AFFINEUR_SIGNING_KEY"


class IndexClients:
    """One index client per list of index URLs, made on first use.

    Variants that name the same indexes share a client (and its page cache);
    making none at all keeps a no-op run free of ``requests``.
    """

    def __init__(self, make: Callable[[tuple[str, ...]], IndexClient] | None = None) -> None:
        self._make = make
        self._clients: dict[tuple[str, ...], IndexClient] = {}

    def __call__(self, variant: Variant) -> IndexClient:
        urls = tuple(variant.indexes) or (default_index_url(),)
        if urls not in self._clients:
            if self._make is None:
                from affineur.index import IndexClient

                self._make = IndexClient
            self._clients[urls] = self._make(urls)
        return self._clients[urls]


class RemoteCaches:
    """Each variant's remote cache in this environment (None without one), one per setting.

    Variants that name the same storage share a client, and so its connections
    and its "unreachable" verdict.
    """

    def __init__(
        self, root: Path, reporter: Reporter, environ: Mapping[str, str] | None = None
    ) -> None:
        self._root = root
        self._reporter = reporter
        self._environ = os.environ if environ is None else environ
        self._caches: dict[str, RemoteCache] = {}
        self._lock = threading.Lock()

    def __call__(self, variant: Variant) -> RemoteCache | None:
        try:
            origin = variant.file.relative_to(self._root).as_posix()
        except ValueError:
            origin = str(variant.file)
        setting = effective_remote_cache(variant.remote_cache, self._environ, origin=origin)
        if setting is None:
            return None
        if importlib.util.find_spec("fsspec") is None:
            # Said while the tasks load, not once per failed build.
            raise AffineurError(
                f"{setting.origin} names a remote cache, which needs affineur's 'remote' extra",
                hint="pip install 'affineur[remote]'",
                stage="config",
            )
        from affineur.build import RemoteCache

        ident = json.dumps([setting.url, setting.mode, setting.options], default=dict)
        with self._lock:
            if ident not in self._caches:
                self._caches[ident] = RemoteCache(setting, reporter=self._reporter)
            return self._caches[ident]


def open_checkout(
    root: Path,
    *,
    reporter: Reporter | None = None,
    keep_going: bool = False,
    clients: Callable[[Variant], IndexClient] | None = None,
    clusters: Callable[[Variant], Cluster | None] | None = None,
) -> Checkout:
    """The checkout at ``root`` with its usual collaborators under ``root/build``.

    ``keep_going`` replaces a failed build by the upstream wheel of the same
    version (see :mod:`affineur.run._substitution`); ``reporter`` gets every
    progress event, one :class:`~affineur.progress.BuildFinished` per build.
    """
    root = Path(root)
    build_dir = root / "build"
    signing_key = os.environ.get(SIGNING_KEY_ENV)
    store = SdistStore(build_dir / "sdists")
    shown = reporter or StreamReporter()

    def discarded(key: BuildKey, reason: str) -> None:
        shown.report(CacheEntryDiscarded(key, reason))

    cache = BuildCache(build_dir / "cache", on_discard=discarded)

    def builder() -> Builder:
        from affineur.build import Builder

        return Builder(cache=cache, store=store, workdir=build_dir, hidden=[root])

    return Checkout(
        root=root,
        store=store,
        cache=cache,
        builders=builder,
        clients=clients or IndexClients(),
        attempts=Attempts(
            cache=cache,
            reporter=shown,
            downloads=build_dir / "substitutes",
            keep_going=keep_going,
        ),
        reporter=shown,
        remotes=RemoteCaches(root, shown),
        clusters=clusters or this_machine,
        host_tools=HostTools(build_dir / "host-tools.json").fingerprint,
        signing_key=Path(signing_key) if signing_key else None,
    )
