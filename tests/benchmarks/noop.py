"""Benchmark: how long a no-op ``doit`` takes in a checkout whose lock holds N packages.

The promise under test is "a second ``doit`` does nothing, quickly, and touches no
network". This script builds a throw-away checkout whose every task is already
satisfied, then times the run that should do nothing::

    .venv/bin/python tests/benchmarks/noop.py                 # 1,000 packages, 5 runs
    .venv/bin/python tests/benchmarks/noop.py --packages 3000 --runs 3 --keep
    .venv/bin/python tests/benchmarks/noop.py --profile       # where a no-op run spends its time

The checkout is synthetic but shaped like a real lock: a few dozen build tools
in chains (each tool is built with the tools below it), every other package
built with one to three of them and installing a few earlier packages, some
packages with overrides and patches. Sdists are a few bytes with their real
sha256 in the lock, and the build cache holds a tiny valid wheel under every
node's build key, computed by the engine itself, so the first run only reuses
cache entries and publishes the index. The variant's index is a closed port on
127.0.0.1: if anything reached for the network, it would fail at once rather
than quietly download.

Three kinds of no-op run are timed: ``doit`` and ``doit -n 2`` as a user runs
them, answered from the no-op stamp the run before wrote (see
affineur.run._noop), and ``doit`` the long way, with the stamp removed first:
the config and locks read, every task made and checked by doit.

A no-op run must execute no task. That is checked four ways, so that a change
of reporter cannot hide an executed task: the run's ``build/reports/summary.json``
(every package "uptodate"), the reporter's lines (doit's ``.  name``, or
affineur's ``[i/n] <verb> <group> <name>`` for a task that ran), the modification
times of the lock, the cache, the sdists and the published index, and the content
of doit's saved state.

Bytecode is cached (in the checkout's ``build/pycache``) even where the
environment turns it off, since a user's interpreter caches it; ``--no-pyc``
measures with the environment as it is.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pstats
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from affineur import graph as g
from affineur.config import load_project, target_environment, validate
from affineur.index import record_hash
from affineur.lock import LockPaths, input_hash, read_lock, write_lock
from affineur.run import DoitTasks, RunContext, open_checkout

REPO = Path(__file__).resolve().parents[2]
COLLECTION = "bench"
VARIANT = "cpu"
# Port 9 (discard) is closed on loopback: an accidental index request fails in
# milliseconds instead of reaching a real index or hanging.
DEAD_INDEX = "http://127.0.0.1:9/simple/"
TOPLEVEL = 5
# Tools sit in a few chains, like setuptools <- setuptools-scm <- ... in real locks.
TOOL_CHAINS = 4
STATE_DIR = Path(".affineur") / "doit-state"
NOOP_STAMP = Path(".affineur") / "noop.json"
T = TypeVar("T")


# --- the synthetic lock (pure) --------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """How many of what: the knobs of the synthetic lock."""

    packages: int
    tools: int
    overridden: int
    seed: int = 1

    @classmethod
    def for_size(cls, packages: int, overridden: int, seed: int = 1) -> Shape:
        # A few dozen tools for a thousand packages; every chain at least two long.
        tools = max(2 * TOOL_CHAINS, min(40, packages // 25))
        if packages < tools + TOPLEVEL:
            raise SystemExit(f"--packages must be at least {tools + TOPLEVEL}")
        return cls(packages, tools, min(overridden, packages - tools), seed)


@dataclass
class Synthetic:
    """The graph's nodes plus the bytes of every sdist they name."""

    nodes: dict[g.NodeKey, g.Node]
    toplevel: tuple[g.Edge, ...]
    sdists: dict[str, bytes] = field(default_factory=dict)
    overridden: tuple[str, ...] = ()


def _key(name: str, version: str) -> g.NodeKey:
    return g.node_key(name, version)


def _closure(
    start: Iterable[g.NodeKey], installs: Mapping[g.NodeKey, list[g.NodeKey]]
) -> set[g.NodeKey]:
    """``start`` and everything it installs, as the locker records a build environment."""
    seen: set[g.NodeKey] = set()
    todo = list(start)
    while todo:
        key = todo.pop()
        if key not in seen:
            seen.add(key)
            todo.extend(installs.get(key, ()))
    return seen


def synthetic(shape: Shape) -> Synthetic:
    """A valid, acyclic lock of ``shape.packages`` nodes; deterministic for a seed.

    Install edges always point to lower indices and build environments to tools,
    which themselves only build with lower tools, so there is no build cycle.
    Every non-tool package is installed by some later package, so the top-level
    requirements (the last few packages) reach the whole install set.
    """
    rng = random.Random(shape.seed)
    names = [f"tool-{i:02d}" for i in range(shape.tools)]
    names += [f"pkg-{i:05d}" for i in range(shape.packages - shape.tools)]
    versions = [f"{1 + i % 3}.{i % 7}.{i % 11}" for i in range(shape.packages)]
    keys = [_key(n, v) for n, v in zip(names, versions, strict=True)]

    installs: dict[g.NodeKey, list[g.NodeKey]] = {k: [] for k in keys}
    builds: dict[g.NodeKey, list[g.NodeKey]] = {k: [] for k in keys}
    # Tools: chain c holds tools c, c + TOOL_CHAINS, ...; each is built with the one
    # below it and also needs it at run time (as a setuptools plugin needs
    # setuptools), so its build environment is the whole chain below it.
    for i in range(TOOL_CHAINS, shape.tools):
        builds[keys[i]].append(keys[i - TOOL_CHAINS])
        installs[keys[i]].append(keys[i - TOOL_CHAINS])
    # Packages: mostly built with low-level tools (as most projects use setuptools).
    first = shape.tools
    for i in range(first, shape.packages):
        weights = [1.0 / (1 + t) for t in range(shape.tools)]
        tools = set(rng.choices(range(shape.tools), weights=weights, k=rng.randint(1, 3)))
        builds[keys[i]] = [keys[t] for t in sorted(tools)]
        if i + 1 < shape.packages:
            # The parent that keeps this package reachable from the top level.
            parent = rng.randint(i + 1, shape.packages - 1)
            installs[keys[parent]].append(keys[i])
        if i > first:
            extra = rng.randint(0, 3)
            installs[keys[i]].extend(keys[rng.randint(first, i - 1)] for _ in range(extra))

    sdists: dict[str, bytes] = {}
    nodes: dict[g.NodeKey, g.Node] = {}
    for i, key in enumerate(keys):
        name, version = names[i], versions[i]
        filename = f"{name.replace('-', '_')}-{version}.tar.gz"
        data = f"synthetic sdist of {key}\n".encode()
        sdists[filename] = data
        deps = sorted(set(installs[key]))
        reqs = sorted(set(builds[key]))
        edges = [g.Edge(d, "install", f"{d.split('==')[0]}>=1") for d in deps]
        edges += [g.Edge(b, "build-system", b.split("==")[0]) for b in reqs]
        nodes[key] = g.Node(
            name=name,
            version=version,
            sdist=g.FileRef(filename, hashlib.sha256(data).hexdigest()),
            build_backend=f"{reqs[0].split('==')[0].replace('-', '_')}.build" if reqs else None,
            edges=tuple(sorted(edges)),
            build_env=tuple(sorted(_closure(reqs, installs))),
        )
    top = keys[-TOPLEVEL:]
    toplevel = tuple(g.Edge(k, "toplevel", k.split("==")[0]) for k in sorted(top))
    ordinary = names[shape.tools :]
    overridden = tuple(sorted(rng.sample(ordinary, shape.overridden)))
    return Synthetic(nodes, toplevel, sdists, overridden)


def tiny_wheel(name: str, version: str) -> tuple[str, bytes]:
    """A minimal valid pure wheel: METADATA, WHEEL and a RECORD that hashes them."""
    dist = f"{name.replace('-', '_')}-{version}"
    info = f"{dist}.dist-info"
    files = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: affineur-benchmark\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{p},{record_hash(d)},{len(d)}\n" for p, d in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), data)
    return f"{dist}-py3-none-any.whl", buffer.getvalue()


# --- the checkout (I/O) ---------------------------------------------------------------


def write_checkout(root: Path, shape: Shape) -> Synthetic:
    """Config files, dodo, sdists and a fresh lock; returns what the lock holds."""
    data = synthetic(shape)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dodo.py", root / "dodo.py")
    # doit reads affineur's plugins from the pyproject.toml of the folder it starts in.
    doit_table = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["doit"]
    (root / "pyproject.toml").write_text(_doit_toml(doit_table))
    requirements = [e.req for e in data.toplevel]
    _write(
        root / "collections" / f"{COLLECTION}.toml",
        f'description = "no-op benchmark"\nvariants = ["{VARIANT}"]\n'
        f"requirements = {json.dumps(requirements)}\n",
    )
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    _write(
        root / "variants" / f"{VARIANT}.yaml",
        f'description: benchmark\npython: "{python}"\nindexes: ["{DEAD_INDEX}"]\n'
        "network_isolation: false\n",
    )
    for name in data.overridden:
        _write(root / "overrides" / f"{name}.yaml", 'env: {BENCH_FLAG: "${version}"}\n')
        _write(
            root / "overrides" / "patches" / name / "0001-bench.patch",
            f"--- a/README\n+++ b/README\n@@ -1 +1 @@\n-{name}\n+{name} patched\n",
        )
    sdists = root / "build" / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    for filename, content in data.sdists.items():
        (sdists / filename).write_bytes(content)

    # The input hash is computed exactly as `doit` will, so the lock is fresh and
    # no run tries to re-lock.
    project = load_project(root)
    collection, variant = project.collections[COLLECTION], project.variants[VARIANT]
    graph = g.Graph(
        collection=COLLECTION,
        variant=VARIANT,
        input_hash=input_hash(project, collection, variant),
        target=target_environment(variant),
        toplevel=data.toplevel,
        nodes=data.nodes,
        discovery=variant.discovery,
    )
    write_lock(graph, LockPaths.of(root, COLLECTION, VARIANT))
    return data


def _doit_toml(table: Mapping[str, Mapping[str, Mapping[str, str]]]) -> str:
    lines = []
    for section, entries in table.get("plugins", {}).items():
        lines.append(f"[tool.doit.plugins.{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in entries.items()]
        lines.append("")
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def fill_cache(root: Path) -> int:
    """A cache entry under every node's build key, as the engine computes the keys."""
    checkout = open_checkout(root)
    count = 0
    for lv in checkout.locked:
        for node_key, build_key in lv.keys.items():
            if checkout.cache.get(build_key) is not None:
                continue
            node = lv.graph.nodes[node_key]
            filename, wheel = tiny_wheel(node.name, node.version)
            with checkout.cache.staging(build_key) as staging:
                (staging / filename).write_bytes(wheel)
                checkout.cache.commit(
                    build_key,
                    staging,
                    {
                        "name": node.name,
                        "version": node.version,
                        "build_key": build_key,
                        "variant": lv.variant.name,
                        "wheel": filename,
                        "sha256": hashlib.sha256(wheel).hexdigest(),
                        "benchmark": True,
                    },
                )
            count += 1
    return count


# --- running and checking -------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    cpu: float = 0.0
    """User plus system CPU seconds of the process and its children."""

    def check(self) -> Run:
        if self.returncode != 0:
            raise SystemExit(
                f"{' '.join(self.argv)} exited {self.returncode}\n{self.stdout}\n{self.stderr}"
            )
        return self


def environment(root: Path, *, pyc: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOIT_", "PIP_"))}
    env.pop("AFFINEUR_TEST_MODE", None)
    env["PIP_CONFIG_FILE"] = os.devnull
    env["NO_PROXY"] = "127.0.0.1,localhost"
    # The runs start in the checkout, so a relative PYTHONPATH (``src``) would break.
    paths = [str(REPO / "src"), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in paths)
    if pyc:
        # A user's interpreter caches bytecode; without it every run compiles all of
        # affineur again. The cache goes into the checkout, never into the repository.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "build" / "pycache")
    return env


def run(root: Path, *args: str, pyc: bool = True, timeout: float = 900) -> Run:
    argv = (sys.executable, *args)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        argv,
        cwd=root,
        env=environment(root, pyc=pyc),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.perf_counter() - started
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = now.ru_utime - used.ru_utime + now.ru_stime - used.ru_stime
    return Run(argv, seconds, done.returncode, done.stdout, done.stderr, cpu)


def watched_files(root: Path) -> dict[str, int]:
    """Modification times of everything a task that ran would have changed.

    doit's state is left out: it is compared by content (:func:`doit_state`),
    because doit saves its group tasks (``build``, ``publish``: no actions) on
    every run, which rewrites the state files without any work being done.
    """
    out: dict[str, int] = {}
    for top in ("lock", "dist", "build/cache", "build/sdists"):
        base = root / top
        if not base.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            for entry in (*dirnames, *filenames):
                path = Path(dirpath, entry)
                out[path.relative_to(root).as_posix()] = path.lstat().st_mtime_ns
    return out


def doit_state(root: Path) -> dict[str, object]:
    """doit's saved state per task, as affineur's state backend keeps it on disk."""
    snapshot = root / STATE_DIR / "state.json"
    state: dict[str, object] = json.loads(snapshot.read_text()) if snapshot.exists() else {}
    journal = root / STATE_DIR / "journal"
    if journal.exists():
        for line in journal.read_text().splitlines():
            op = json.loads(line)
            if op[0] == "s":
                entry = state.setdefault(op[1], {})
                assert isinstance(entry, dict)
                entry[op[2]] = op[3]
            elif op[0] == "r":
                state.pop(op[1], None)
            else:
                state.clear()
    return state


def state_mtimes(root: Path) -> tuple[int, ...]:
    return tuple(p.stat().st_mtime_ns for p in sorted((root / STATE_DIR).glob("*")) if p.is_file())


@dataclass(frozen=True)
class Snapshot:
    files: Mapping[str, int]
    state: Mapping[str, object]
    state_mtimes: tuple[int, ...]
    since: float

    @classmethod
    def take(cls, root: Path) -> Snapshot:
        return cls(watched_files(root), doit_state(root), state_mtimes(root), time.time() - 1)


# doit's "executing" line (".  build:cpu:foo-1.0", printed by doit's own reporter),
# and affineur's line for a package that finished ("[3/40] built cpu:foo-1.0 (1.2s)").
_DOIT_LINE = re.compile(r"^\.\s+(\S+)")
_PROGRESS_LINE = re.compile(r"^\[\d+/\d+\] (?!skipped )(\w+) (\S+)")
# The checkout's message when a publish task ran (tasks other than builds get no line).
_PUBLISHED = re.compile(r"published \d+ wheels to \S*/dist/([^/]+)/([^/]+)/simple$")


def executed_tasks(root: Path, result: Run, before: Snapshot) -> list[str]:
    """Every sign that the run executed something; empty for a true no-op."""
    signs: set[str] = set()
    for line in result.stdout.splitlines():
        if m := _DOIT_LINE.match(line):
            signs.add(m.group(1))
        elif m := _PROGRESS_LINE.match(line):
            signs.add(f"build:{m.group(2)} ({m.group(1)})")
    for line in result.stderr.splitlines():
        if m := _PUBLISHED.search(line):
            signs.add(f"publish:{m.group(1)}:{m.group(2)}")
    summary = root / "build" / "reports" / "summary.json"
    if summary.exists() and summary.stat().st_mtime >= before.since:
        data = json.loads(summary.read_text())
        signs.update(
            f"{p['task']} ({p['outcome']})" for p in data["packages"] if p["outcome"] != "uptodate"
        )
        signs.update(f"{t} (failed)" for t in data.get("failed_tasks", ()))
    after = watched_files(root)
    files = before.files
    changed = sorted(p for p in files.keys() | after.keys() if files.get(p) != after.get(p))
    if changed:
        more = f" (+{len(changed) - 3} more)" if len(changed) > 3 else ""
        signs.add(f"files changed: {', '.join(changed[:3])}{more}")
    state = doit_state(root)
    signs.update(
        f"{t} (doit state changed)"
        for t in before.state.keys() | state.keys()
        if before.state.get(t) != state.get(t)
    )
    return sorted(signs)


@dataclass
class Timings:
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    signs: list[str] = field(default_factory=list)
    state_rewrites: int = 0


def timed_noops(
    root: Path, args: Sequence[str], runs: int, *, pyc: bool, stamp: bool = True
) -> Timings:
    """``runs`` no-op runs; with ``stamp`` False, each without the no-op stamp (the long way)."""
    out = Timings()
    label = " ".join(["doit", *args]) + ("" if stamp else " (long way)")
    for i in range(runs):
        if not stamp:
            (root / NOOP_STAMP).unlink(missing_ok=True)
        before = Snapshot.take(root)
        result = run(root, "-m", "doit", *args, pyc=pyc).check()
        out.seconds.append(result.seconds)
        out.cpu.append(result.cpu)
        found = executed_tasks(root, result, before)
        out.signs += found
        out.state_rewrites += state_mtimes(root) != before.state_mtimes
        note = f"  EXECUTED: {'; '.join(found)}" if found else ""
        print(f"  {label:<22} run {i + 1}: {result.seconds:6.3f} s ({result.cpu:.3f} s CPU){note}")
    return out


def best_of(root: Path, args: Sequence[str], runs: int, *, pyc: bool) -> float:
    return min(run(root, *args, pyc=pyc).check().seconds for _ in range(max(1, runs)))


# --- where the time goes --------------------------------------------------------------


def phases(root: Path) -> list[tuple[str, float]]:
    """In-process timings of what loading the dodo does, one step at a time."""
    out: list[tuple[str, float]] = []

    def step(label: str, fn: Callable[[], T]) -> T:
        started = time.perf_counter()
        value = fn()
        out.append((label, time.perf_counter() - started))
        return value

    path = LockPaths.of(root, COLLECTION, VARIANT).graph
    raw = step("read graph.json", path.read_bytes)
    data = step("parse graph.json", lambda: json.loads(raw))
    step("validate graph.json (schema)", lambda: validate(data, "graph", file=str(path)))
    step("read_lock (read + parse + validate + model)", lambda: read_lock(path))
    checkout = open_checkout(root)
    step("load_project", lambda: checkout.project)
    step("Checkout.locked (read_lock + build keys)", lambda: checkout.locked)
    tasks = DoitTasks(checkout, RunContext())
    creators: dict[str, Callable[[], Iterable[object]]] = {
        "lock": tasks.lock,
        "download": tasks.download,
        "build": tasks.build,
        "publish": tasks.publish,
    }
    for group, creator in creators.items():
        step(f"create {group} tasks", _counting(creator))
    return out


def _counting(creator: Callable[[], Iterable[object]]) -> Callable[[], int]:
    return lambda: sum(1 for _ in creator())


def profile_noop(root: Path, top: int, *, pyc: bool) -> None:
    """cProfile one no-op ``doit`` in a subprocess and print the costliest functions."""
    out = root / "build" / "noop.prof"
    run(root, "-m", "cProfile", "-o", str(out), "-m", "doit", pyc=pyc).check()
    for order in ("cumulative", "tottime"):
        text = io.StringIO()
        pstats.Stats(str(out), stream=text).strip_dirs().sort_stats(order).print_stats(top)
        print(f"\nprofile of one no-op run, by {order}:")
        body = text.getvalue()
        print(body[body.find("   ncalls") :].rstrip())


# --- main -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=1000, help="nodes in the lock")
    parser.add_argument("--runs", type=int, default=5, help="timed no-op runs of each kind")
    parser.add_argument("--overrides", type=int, default=10, help="packages with an override")
    parser.add_argument("--dir", type=Path, help="checkout to create (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the checkout afterwards")
    parser.add_argument("--profile", action="store_true", help="cProfile one no-op run")
    parser.add_argument("--top", type=int, default=25, help="profile rows to print")
    parser.add_argument(
        "--no-pyc",
        action="store_true",
        help="keep this environment's bytecode setting (PYTHONDONTWRITEBYTECODE) as it is",
    )
    opts = parser.parse_args(argv)

    root = (opts.dir or Path(tempfile.mkdtemp(prefix="affineur-noop-"))).resolve()
    if opts.dir and root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty")
    try:
        return _bench(root, opts)
    finally:
        if opts.keep:
            print(f"\ncheckout kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _bench(root: Path, opts: argparse.Namespace) -> int:
    shape = Shape.for_size(opts.packages, opts.overrides)
    started = time.perf_counter()
    write_checkout(root, shape)
    entries = fill_cache(root)
    print(
        f"checkout {root}: {shape.packages} packages ({shape.tools} build tools, "
        f"{shape.overridden} overridden), {entries} cache entries, "
        f"set up in {time.perf_counter() - started:.1f} s"
    )

    pyc = not opts.no_pyc
    first = run(root, "-m", "doit", pyc=pyc).check()
    print(f"first run (reuse every cache entry, publish): {first.seconds:.3f} s")
    index = root / "dist" / COLLECTION / VARIANT / "simple" / "index.html"
    if not index.exists():
        raise SystemExit(f"the first run published nothing ({index} is missing)\n{first.stdout}")

    print(f"\nno-op runs ({opts.runs} of each):")
    # The long way first: each of its runs writes the no-op stamp the others then use.
    long_way = timed_noops(root, (), opts.runs, pyc=pyc, stamp=False)
    serial = timed_noops(root, (), opts.runs, pyc=pyc)
    parallel = timed_noops(root, ("-n", "2"), opts.runs, pyc=pyc)
    signs = long_way.signs + serial.signs + parallel.signs
    rewrites = long_way.state_rewrites + serial.state_rewrites + parallel.state_rewrites

    listing = run(root, "-m", "doit", "list", "--all", pyc=pyc).check()
    tasks = sum(1 for line in listing.stdout.splitlines() if line.strip())
    repeat = min(3, opts.runs)
    startup = best_of(root, ("-c", "pass"), repeat, pyc=pyc)
    imports = best_of(root, ("-c", "import affineur.run"), repeat, pyc=pyc)
    loading = best_of(root, ("-m", "doit", "list"), repeat, pyc=pyc)

    print("\nresults:")
    for label, timed in (("doit", serial), ("doit -n 2", parallel), ("doit, long way", long_way)):
        times = timed.seconds
        print(
            f"  {label:<14} min {min(times):.3f} s   median {statistics.median(times):.3f} s"
            f"   max {max(times):.3f} s   CPU median {statistics.median(timed.cpu):.3f} s"
        )
    print(f"  tasks ('doit list --all'): {tasks}")
    print(f"  tasks executed in no-op runs: {len(signs)}")
    for sign in sorted(set(signs)):
        print(f"    {sign}")
    print(f"  no-op runs that rewrote doit's state files: {rewrites} of {3 * opts.runs}")
    bytecode = "cached in build/pycache" if pyc else "as this environment says (--no-pyc)"
    print(f"  bytecode: {bytecode}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  machine: {os.cpu_count()} cpus, load average {load}")
    print("\nbreakdown (best of a few runs, wall time of a fresh process):")
    print(f"  python startup ('python -c pass')        {startup:.3f} s")
    print(f"  import affineur.run                            {imports:.3f} s")
    print(f"  load the dodo and list tasks (doit list) {loading:.3f} s")
    print(f"  the rest of a no-op run the long way (up-to-date checks, state, reports) "
          f"{max(0.0, min(long_way.seconds) - loading):.3f} s")  # fmt: skip
    print("\nloading, step by step (in this process, modules already imported):")
    for label, seconds in phases(root):
        print(f"  {label:<46} {seconds:.3f} s")
    if opts.profile:
        profile_noop(root, opts.top, pyc=pyc)
    return 1 if signs else 0


if __name__ == "__main__":
    sys.exit(main())
