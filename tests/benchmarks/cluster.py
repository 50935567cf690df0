"""Simulation: a thousand-package, five-variant tree built on a Dask cluster through a remote cache.

Prints the figures docs/scale.md quotes::

    .venv/bin/python tests/benchmarks/cluster.py                  # 1,000 packages x 5 variants
    .venv/bin/python tests/benchmarks/cluster.py --packages 3000 --workers 8 32 128

The lock is the synthetic one of tests/benchmarks/noop.py (tool chains, packages
built with one to three tools, install edges). Build keys are computed by the
engine's own function (affineur.build.build_keys), so "what rebuilds when X
changes" is the real rule, not a model of it. Build times are drawn from a
log-normal distribution (median 20 s, a tail of packages taking tens of
minutes, as compiled packages do); transfer costs use the stated bandwidth and
request latency, and the per-entry cost of the remote cache layer is measured
here on a file:// store with the real code (RemoteCache.push/fetch).

Scheduling is list scheduling as doit + Dask do it: a build starts when its
build environment is built and a worker slot is free; ready builds start longest
first only with --longest-first (doit starts them in readiness order).
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

# Run as a script from anywhere: the synthetic lock lives beside it, in the tests package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from affineur import graph as g
from affineur.build import BuildCache, BuildInputs, BuildKey, RemoteCache, build_keys
from affineur.config import RemoteCacheSetting
from tests.benchmarks.noop import Shape, synthetic

VARIANTS = ("cpu", "cuda12", "cuda13", "rocm", "cpu-py314")


def durations(nodes: Mapping[g.NodeKey, g.Node], seed: int) -> dict[g.NodeKey, float]:
    rng = random.Random(seed)
    out = {}
    for key, node in nodes.items():
        # Tools are small pure-Python projects; packages have a heavy tail.
        median = 8.0 if node.name.startswith("tool-") else 20.0
        out[key] = min(3600.0, rng.lognormvariate(0, 1.1) * median)
    return out


def keys_for(
    nodes: Mapping[g.NodeKey, g.Node], variant: str, changed: Mapping[str, str] | None = None
) -> dict[g.NodeKey, BuildKey]:
    """The engine's build keys of every node for ``variant``; ``changed`` alters a setting."""
    graph = g.Graph(
        collection="sim",
        variant=variant,
        input_hash="0" * 64,
        target={"python_version": "3.12"},
        toplevel=(),
        nodes=nodes,
    )
    edits = changed or {}

    def inputs(node: g.Node) -> BuildInputs:
        settings = (
            {"variant": variant, "env": {"CHANGED": edits[node.name]}}
            if node.name in edits
            else {"variant": variant}
        )
        return BuildInputs(settings=settings, patches=())

    return build_keys(graph, inputs)


def makespan(
    nodes: Mapping[g.NodeKey, g.Node],
    seconds: Mapping[g.NodeKey, float],
    todo: set[g.NodeKey],
    slots: int,
    overhead: float,
    longest_first: bool,
) -> tuple[float, float]:
    """(wall time, busy fraction) of building ``todo`` with ``slots`` parallel builds."""
    if not todo:
        return 0.0, 0.0
    waiting = {k: {d for d in nodes[k].build_env if d in todo} for k in todo}
    users: dict[g.NodeKey, list[g.NodeKey]] = {k: [] for k in todo}
    for k, deps in waiting.items():
        for d in deps:
            users[d].append(k)
    ready = [k for k, deps in waiting.items() if not deps]
    order = 0
    queue: list[tuple[float, int, g.NodeKey]] = []

    def push(key: g.NodeKey) -> None:
        nonlocal order
        order += 1
        heapq.heappush(queue, (-seconds[key] if longest_first else order, order, key))

    for k in ready:
        push(k)
    running: list[tuple[float, g.NodeKey]] = []
    now = busy = 0.0
    while queue or running:
        while queue and len(running) < slots:
            _, _, key = heapq.heappop(queue)
            cost = seconds[key] + overhead
            busy += cost
            heapq.heappush(running, (now + cost, key))
        now, done = heapq.heappop(running)
        for user in users[done]:
            waiting[user].discard(done)
            if not waiting[user]:
                push(user)
    return now, busy / (now * slots)


def critical_path(
    nodes: Mapping[g.NodeKey, g.Node], seconds: Mapping[g.NodeKey, float], todo: set[g.NodeKey]
) -> float:
    memo: dict[g.NodeKey, float] = {}

    def longest(key: g.NodeKey) -> float:
        if key not in memo:
            deps = [d for d in nodes[key].build_env if d in todo]
            memo[key] = seconds[key] + max((longest(d) for d in deps), default=0.0)
        return memo[key]

    return max((longest(k) for k in todo), default=0.0)


def measure_remote(entries: int) -> tuple[float, float]:
    """Seconds per entry to push and to fetch, through RemoteCache on a file:// store."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        local = BuildCache(root / "local")
        keys = [BuildKey(f"{i:064x}") for i in range(entries)]
        for key in keys:
            with local.staging(key) as staging:
                wheel = staging / f"p{int(key, 16)}-1.0-py3-none-any.whl"
                with zipfile.ZipFile(wheel, "w") as zf:
                    zf.writestr("p/__init__.py", "x" * 2000)
                (staging / "build.log").write_text("log\n" * 50)
                local.commit(
                    key,
                    staging,
                    {
                        "name": f"p{int(key, 16)}",
                        "version": "1.0",
                        "build_key": key,
                        "wheel": wheel.name,
                    },
                )
        remote = RemoteCache(RemoteCacheSetting((root / "remote").as_uri()))
        started = time.perf_counter()
        for key in keys:
            entry = local.get(key)
            assert entry is not None and remote.push(entry)
        pushed = time.perf_counter() - started
        other = BuildCache(root / "other")
        started = time.perf_counter()
        for key in keys:
            assert remote.fetch(key, other, name=f"p{int(key, 16)}", version="1.0") is not None
        fetched = time.perf_counter() - started
    return pushed / entries, fetched / entries


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=1000)
    parser.add_argument("--variants", type=int, default=len(VARIANTS))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--slots", type=int, default=4, help="builds at once per worker")
    parser.add_argument("--wheel-mb", type=float, default=0.5, help="median wheel size")
    parser.add_argument("--mbit", type=float, default=1000.0, help="bandwidth to the store")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="per storage request")
    parser.add_argument("--longest-first", action="store_true")
    parser.add_argument("--entries", type=int, default=200, help="remote entries to time")
    parser.add_argument("--seed", type=int, default=1)
    opts = parser.parse_args(argv)

    synth = synthetic(Shape.for_size(opts.packages, overridden=0, seed=opts.seed))
    nodes = synth.nodes
    seconds = durations(nodes, opts.seed)
    variants = VARIANTS[: opts.variants]
    total = len(nodes) * len(variants)
    print(f"synthetic lock: {len(nodes)} packages x {len(variants)} variants = {total} builds")
    print(
        f"build time per variant: sum {sum(seconds.values()) / 3600:.1f} h, "
        f"median {statistics.median(seconds.values()):.0f} s, "
        f"max {max(seconds.values()) / 60:.0f} min"
    )

    # Per-build overhead on a worker: fetch sdist + build env (cached on the worker
    # after its first use of a tool), upload wheel + log + entry; then the
    # submitting run fetches entry + wheel + log.
    transfer = opts.wheel_mb * 8 / opts.mbit
    overhead = 2 * transfer + 7 * opts.latency_ms / 1000
    print(
        f"\nper-build overhead assumed: {overhead:.2f} s "
        f"({opts.wheel_mb} MB wheels, {opts.mbit:g} Mbit/s, {opts.latency_ms:g} ms per request)"
    )

    print("\n== cold build, every variant (nothing cached) ==")
    todo_all: set[g.NodeKey] = set(nodes)
    path = critical_path(nodes, seconds, todo_all)
    print(f"critical path (tool chains + slowest package): {path / 60:.1f} min")
    for workers in opts.workers:
        slots = workers * opts.slots
        # Each build on the cluster holds one doit thread while it waits: doit's -n
        # bounds what is in flight (affineur's default with a cluster: 32).
        row = []
        for threads in (32, slots):
            # Variants are independent trees: their builds interleave on the same slots.
            wall, busy = makespan_variants(
                nodes,
                seconds,
                todo_all,
                len(variants),
                min(slots, threads),
                overhead,
                opts.longest_first,
            )
            used = busy * min(slots, threads) / slots
            row.append(f"-n {threads:<4d} {wall / 3600:6.2f} h ({used:4.0%} busy)")
        print(f"  {workers:4d} workers x {opts.slots} slots: " + ",  ".join(row))

    print("\n== what a change rebuilds (build keys by the engine's rule) ==")
    base = {v: keys_for(nodes, v) for v in variants}
    tools = sorted(k for k in nodes if nodes[k].name.startswith("tool-"))
    bottom = nodes[tools[0]].name
    leaves = sorted(k for k in nodes if not nodes[k].name.startswith("tool-"))
    rng = random.Random(opts.seed)
    bumped = {nodes[k].name: "1" for k in rng.sample(leaves, 10)}
    scenarios = {
        "no change (new CI runner, warm remote cache)": ({}, variants),
        "10 packages updated by a lock change": (bumped, variants),
        f"the lowest build tool ({bottom}) updated": ({bottom: "1"}, variants),
        "one variant's settings changed (cuda12)": (
            {n.name: "1" for n in nodes.values()},
            variants[1:2],
        ),
        "compiler or Python changed (every key)": ({n.name: "1" for n in nodes.values()}, variants),
    }
    for label, (changed, hit) in scenarios.items():
        rebuilt: dict[str, set[g.NodeKey]] = {}
        for v in variants:
            now = keys_for(nodes, v, changed if v in hit else None)
            rebuilt[v] = {k for k in nodes if now[k] != base[v][k]}
        count = sum(len(r) for r in rebuilt.values())
        slots = max(opts.workers) * opts.slots
        wall = max(
            makespan(nodes, seconds, r, slots, overhead, opts.longest_first)[0]
            for r in rebuilt.values()
        )
        fetched = total - count
        print(
            f"  {label}:\n    hit rate {fetched / total:6.1%} ({count} of {total} rebuilt), "
            f"rebuild {wall / 60:.1f} min on {max(opts.workers)} workers; "
            f"{fetched} entries fetched"
        )

    print("\n== a fresh CI runner taking everything from the remote cache ==")
    push, fetch = measure_remote(opts.entries)
    print(
        f"measured RemoteCache on file://: push {push * 1000:.1f} ms, "
        f"fetch {fetch * 1000:.1f} ms per entry (tiny wheels, this machine)"
    )
    requests = total * 3
    megabytes = total * opts.wheel_mb
    parallel = 32
    seconds_net = requests * opts.latency_ms / 1000 / parallel + megabytes * 8 / opts.mbit
    print(
        f"  {requests} GETs ({total} entries x entry.json, wheel, log), "
        f"{megabytes / 1000:.1f} GB: ~{seconds_net / 60:.1f} min with {parallel} doit threads"
    )
    print(
        f"  the index publish then reads {total} local wheels; a no-op run after it asks "
        "the store nothing"
    )
    return 0


def makespan_variants(
    nodes: Mapping[g.NodeKey, g.Node],
    seconds: Mapping[g.NodeKey, float],
    todo: set[g.NodeKey],
    variants: int,
    slots: int,
    overhead: float,
    longest_first: bool,
) -> tuple[float, float]:
    """Several variants' trees on one pool: the same graph, copied under new keys."""
    merged: dict[g.NodeKey, g.Node] = {}
    cost: dict[g.NodeKey, float] = {}
    for v in range(variants):
        rename = {k: g.NodeKey(f"{k}@{v}") for k in nodes}
        for k, node in nodes.items():
            merged[rename[k]] = g.Node(
                node.name, node.version, build_env=tuple(rename[d] for d in node.build_env)
            )
            cost[rename[k]] = seconds[k]
    return makespan(merged, cost, set(merged), slots, overhead, longest_first)


if __name__ == "__main__":
    sys.exit(main())
