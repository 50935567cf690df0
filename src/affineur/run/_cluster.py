"""Building on a cluster: the inputs go up through the remote cache, the wheel comes back.

The workers share no files with this machine, so everything a build reads (the
sdist, its vendored crates, the wheels of its build environment) is uploaded to
the remote cache first, and the built entry is fetched from it afterwards, where
a local build would have put it. A cluster itself is anything with an address
and a ``build`` method (see :mod:`affineur.run._dask`); this module loads only
when a variant builds on one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol

from affineur import graph as g
from affineur.build import BuildCache, BuildJob, BuildKey, job_graph, patch_name
from affineur.errors import AffineurError
from affineur.index import SdistStore, sha256_file
from affineur.progress import BuildStarted, Reporter
from affineur.run._scheduler import Demand, demand_of

if TYPE_CHECKING:
    from affineur.build import RemoteCache
    from affineur.config import Settings, Variant

__all__ = ["Cluster", "build_on"]


class Cluster(Protocol):
    """Where a build runs when not on this machine (see affineur.run._dask)."""

    address: str

    def build(self, job: BuildJob, demand: Demand, log: Path) -> Mapping[str, Any]: ...


def build_on(
    cluster: Cluster,
    remote: RemoteCache | None,
    *,
    variant: Variant,
    graph: g.Graph,
    keys: Mapping[g.NodeKey, BuildKey],
    node: g.Node,
    key: BuildKey,
    log: Path,
    store: SdistStore,
    cache: BuildCache,
    settings: Settings,
    patches: Sequence[Path],
    python_key: str,
    jobs: int,
    resources: Mapping[str, Any],
    source_attestation: Mapping[str, Any] | None,
    reporter: Reporter,
) -> tuple[str, str]:
    """Build on a cluster, through the remote cache both ways; the wheel lands in ``cache``.

    Returns the wheel's name and the worker that built it."""
    if remote is None or not remote.writable:
        raise AffineurError(
            f"variant {variant.name} builds on {cluster.address}, which needs a "
            "remote cache the workers can write",
            hint="name a read-write remote_cache in the variant, or set AFFINEUR_REMOTE_CACHE",
            stage="config",
        )
    assert node.sdist is not None
    # What the workers read, they find in the remote cache: upload it first.
    sdist = store.ensure(node.name, node.sdist.filename, node.sdist.sha256, None)
    remote.push_sdist(sdist, node.sdist.sha256)
    crates = None
    if node.crates is not None:
        # The workers share no files with this machine: the vendored tree goes too.
        from affineur.pep517 import CrateStore, pack_tree

        crate_store = CrateStore(store.root / "crates")
        archive = pack_tree(
            crate_store.verified(node.name, node.crates), crate_store.root / "archives"
        )
        crates = (archive.name, sha256_file(archive))
        remote.push_sdist(archive, crates[1])
    env = []
    for dep in node.build_env:
        dep_key, dep_node = keys[dep], graph.nodes[dep]
        entry = cache.get(dep_key)
        if entry is not None and not remote.push(entry):
            raise AffineurError(
                f"cannot upload {dep_node.name}=={dep_node.version} for the workers",
                stage="build-env",
                hint="check this machine's access to the remote cache",
            )
        env.append((dep_key, dep_node.name, dep_node.version))
    job = BuildJob(
        run="",
        key=key,
        variant=variant.name,
        node=node,
        graph=job_graph(graph, node),
        settings=settings,
        patches=tuple((patch_name(p), p.read_bytes()) for p in patches),
        env=tuple(env),
        network_isolation=variant.network_isolation,
        remote=remote.setting,
        sandbox=variant.sandbox,
        evidence=variant.evidence,
        source_attestation=source_attestation,
        python=variant.python,
        python_key=python_key,
        interpreter=variant.interpreter,
        jobs=jobs,
        crates=crates,
    )
    task = SimpleNamespace(name=node.name, meta={"resources": resources})
    reporter.report(BuildStarted(node.name, node.version, variant.name, key, where=cluster.address))
    result = cluster.build(job, demand_of(task), log)
    entry = remote.fetch(key, cache, name=node.name, version=node.version)
    if entry is None:
        raise AffineurError(
            f"{node.name}=={node.version} was built on {result.get('worker')}, "
            "but its entry in the remote cache is missing or was refused",
            stage="build",
        )
    log.unlink(missing_ok=True)  # the entry holds the log now, as a local build's does
    return entry.wheel.name, str(result.get("worker"))
