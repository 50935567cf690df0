"""Benchmark: what one build costs beyond the backend's own work.

Every package build pays the same fixed costs whatever it builds: verify and unpack
the sdist, make a build environment holding the locked build tools, start the hook
processes, check the wheel and stamp its build record. For a trivial package those
costs are nearly the whole build, so this script builds one, many times over, through
the real :class:`affineur.build.Builder`::

    .venv/bin/python tests/benchmarks/build_overhead.py               # 10 builds
    .venv/bin/python tests/benchmarks/build_overhead.py --runs 30 --no-isolation
    .venv/bin/python tests/benchmarks/build_overhead.py --backend-wheel flit_core-*.whl

The package is a one-module flit-core project; its build environment holds only
flit-core, whose wheel is taken from ``--backend-wheel`` or from the index pip is
configured to use. Each build has a new build key, so none is answered by the cache;
a build environment made for the same tools may be reused, as it is in a real run.

It prints the median and the best wall time of a build, the same split by phase
(the time inside each step the builder takes), and for scale the cost of starting
an interpreter and of importing the backend in one.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from affineur import graph as g
from affineur import pep517
from affineur.build import BuildCache, Builder, BuildKey, BuildRequest
from affineur.config import SandboxSetting, Settings
from affineur.index import SdistStore

NAME, VERSION = "overhead-probe", "1.0"
BACKEND = "flit_core.buildapi"
TARGET = {"python_version": f"{sys.version_info.major}.{sys.version_info.minor}"}

PYPROJECT = f"""\
[build-system]
requires = ["flit_core>=3.2,<5"]
build-backend = "{BACKEND}"

[project]
name = "{NAME}"
version = "{VERSION}"
description = "a trivial package: its build is all overhead"
"""


# --- inputs ---------------------------------------------------------------------------


def probe_sdist(out: Path) -> Path:
    """The sdist of the trivial package (fixed bytes, like a real release)."""
    stem = f"{NAME.replace('-', '_')}-{VERSION}"
    files = {
        "pyproject.toml": PYPROJECT,
        "overhead_probe/__init__.py": '"""Nothing to see."""\n',
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n",
    }
    path = out / f"{stem}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{stem}/{rel}")
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def upstream_flit_core(dest: Path) -> Path:
    """The newest flit-core wheel on the index pip is configured to use."""
    from affineur.config import default_index_url
    from affineur.index import IndexClient, UpstreamWheels

    client = IndexClient((default_index_url(),))
    files = [f for f in client.project_files("flit-core") if f.kind == "wheel" and f.version]
    if not files:
        raise SystemExit("error: the index has no flit-core wheel; pass --backend-wheel")
    newest = max(f.version for f in files if f.version is not None)
    return UpstreamWheels(client, dest).fetch("flit-core", newest)


# --- timing the builder's steps -------------------------------------------------------


def cpu_seconds() -> float:
    """User + system time of this process and of every child it waited for."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Phases:
    """Wall and CPU seconds spent inside chosen functions, summed per label, per build."""

    def __init__(self) -> None:
        self.current: dict[str, tuple[float, float]] = {}
        self.labels: list[str] = []

    def wrap(self, owner: Any, attribute: str, label: str) -> None:
        original = getattr(owner, attribute, None)
        if original is None:
            return
        if label not in self.labels:
            self.labels.append(label)
        is_classmethod = isinstance(owner.__dict__.get(attribute), classmethod)
        function = original.__func__ if is_classmethod else original

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), cpu_seconds()
            try:
                return function(*args, **kwargs)
            finally:
                w, c = self.current.get(label, (0.0, 0.0))
                self.current[label] = (
                    w + time.perf_counter() - wall,
                    c + cpu_seconds() - cpu,
                )

        setattr(owner, attribute, classmethod(timed) if is_classmethod else timed)

    @contextlib.contextmanager
    def build(self) -> Iterator[dict[str, tuple[float, float]]]:
        self.current = {}
        yield self.current


def instrument(phases: Phases) -> None:
    """The builder's steps, as far as this version of affineur has them."""
    from affineur import pep517
    from affineur.build import _builder

    # Looked up by name, so the script also measures an affineur from before a
    # step existed (A/B runs against an older checkout): missing steps are skipped.
    store = getattr(pep517, "EnvironmentStore", None)

    from affineur.pep517 import _hooks

    try:
        from affineur.pep517._session import HookServer
    except ImportError:  # before the session had a module of its own
        HookServer = getattr(_hooks, "_HookServer", None)  # type: ignore[misc]
    phases.wrap(_builder, "safe_extract", "unpack the sdist")
    phases.wrap(_builder, "unpack_sdist", "unpack the sdist")
    phases.wrap(store, "environment", "get the environment (stored or made)")
    phases.wrap(pep517.BuildEnvironment, "create", "create a venv")
    phases.wrap(pep517.BuildEnvironment, "install", "install the build tools")
    phases.wrap(
        pep517.HookCaller, "get_requires_for_build_wheel", "hook get_requires_for_build_wheel"
    )
    phases.wrap(pep517.HookCaller, "build_wheel", "hook build_wheel")
    phases.wrap(HookServer, "close", "end the hook process")
    phases.wrap(_builder, "add_build_record", "stamp the build record")
    # What every build pays after its hooks: checks, evidence, the wheel's rewrite, the cache.
    phases.wrap(_builder, "verify_wheel", "check the wheel against the lock")
    phases.wrap(_builder, "sbom_document", "write the SBOM")
    phases.wrap(_builder, "finish_wheel", "rewrite the wheel (record, SBOM)")
    phases.wrap(_builder, "check_wheel_record", "check the rewritten RECORD")
    phases.wrap(_builder, "provenance_statement", "write the provenance statement")
    phases.wrap(BuildCache, "commit", "store the result in the cache")


# --- main -----------------------------------------------------------------------------


def interpreter_costs(python: str, runs: int) -> tuple[float, float]:
    def best(*args: str) -> float:
        times = []
        for _ in range(max(1, runs)):
            started = time.perf_counter()
            subprocess.run([python, *args], check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        return min(times)

    return best("-I", "-c", "pass"), best("-I", "-c", f"import {BACKEND}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="builds to time")
    parser.add_argument("--backend-wheel", type=Path, help="a flit_core wheel (default: index)")
    parser.add_argument(
        "--no-isolation", action="store_true", help="build without network isolation"
    )
    parser.add_argument(
        "--sandbox",
        choices=("unshare", "bubblewrap", "none"),
        default="unshare",
        help="the hooks' sandbox (default unshare: bubblewrap's pid namespace reaps the "
        "hook processes itself, so their CPU time would not be counted)",
    )
    parser.add_argument("--dir", type=Path, help="work directory (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    opts = parser.parse_args(argv)
    isolation = not opts.no_isolation
    if isolation and not pep517.network_isolation_available():
        print("note: network isolation does not work here; building without it")
        isolation = False

    work = (opts.dir or Path(tempfile.mkdtemp(prefix="affineur-overhead-"))).absolute()
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _bench(work, opts, isolation)
    finally:
        if opts.keep:
            print(f"work directory kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _bench(work: Path, opts: argparse.Namespace, isolation: bool) -> int:
    wheel = opts.backend_wheel or upstream_flit_core(work / "upstream")
    flit_version = wheel.name.split("-")[1]
    flit_key = g.node_key("flit-core", flit_version)
    store = SdistStore(work / "sdists")
    sdist = probe_sdist(Path(tempfile.mkdtemp(dir=work)))
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    store.path(sdist.name).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(sdist, store.path(sdist.name))
    node = g.Node(
        name=NAME,
        version=VERSION,
        sdist=g.FileRef(sdist.name, digest),
        build_backend=BACKEND,
        edges=(g.Edge(flit_key, "build-system", "flit_core>=3.2,<5"),),
        build_env=(flit_key,),
    )
    builder = Builder(cache=BuildCache(work / "cache"), store=store, workdir=work / "build")
    phases = Phases()
    instrument(phases)

    def request(i: int) -> BuildRequest:
        key = BuildKey(hashlib.sha256(f"overhead {os.getpid()} {i}".encode()).hexdigest())
        return BuildRequest(
            node=node,
            key=key,
            variant="bench",
            target=TARGET,
            settings=Settings(),
            patches=(),
            env_wheels=[wheel],
            network_isolation=isolation,
            sandbox=SandboxSetting(kind=opts.sandbox),
        )

    print(f"building {NAME} {VERSION} with {wheel.name}, {opts.runs} times "
          f"(network isolation {'on' if isolation else 'off'}; sandbox {opts.sandbox}; "
          f"load {_load()})")  # fmt: skip
    walls: list[float] = []
    cpus: list[float] = []
    splits: list[dict[str, tuple[float, float]]] = []
    for i in range(opts.runs):
        with phases.build() as split:
            wall, cpu = time.perf_counter(), cpu_seconds()
            builder.build(request(i), None)
            walls.append(time.perf_counter() - wall)
            cpus.append(cpu_seconds() - cpu)
        splits.append(dict(split))
        print(f"  build {i + 1:>2}: {walls[-1]:.3f} s wall, {cpus[-1]:.3f} s CPU", flush=True)

    # The first build makes the environment; the others find it made, as every
    # later build with the same tools does.
    later = slice(1, None) if opts.runs > 1 else slice(None)
    print("\nresults (wall and CPU seconds; CPU counts the hook processes too):")
    print(f"  first build:         {walls[0]:.3f} s wall, {cpus[0]:.3f} s CPU")
    median_wall, median_cpu = statistics.median(walls[later]), statistics.median(cpus[later])
    print(f"  later builds median: {median_wall:.3f} s wall, {median_cpu:.3f} s CPU; "
          f"best {min(walls[later]):.3f} s wall")  # fmt: skip
    # Phases nest (a venv is made inside getting the environment), and a hook
    # process's CPU is counted when it ends, so phases show wall time only.
    print("  by phase, later builds (median wall seconds):")
    for label in phases.labels:
        seen = [split[label][0] for split in splits[later] if label in split]
        if seen:
            print(f"    {label:<40} {statistics.median(seen):.3f} s")
    # The same kind of environment the builds had (with compiled bytecode, where
    # the builder makes them so), so the figures below are what each hook process pays.
    store = getattr(pep517, "EnvironmentStore", None)
    if store is not None:
        env = store(work / "scale").environment([wheel])
    else:
        env = pep517.BuildEnvironment.create(work / "scale-env")
        env.install([wheel])
    start, backend = interpreter_costs(str(env.python), 3)
    print("  for scale (best of 3, an interpreter of a build environment):")
    print(f"    {'start it':<40} {start:.3f} s")
    print(f"    {'start it and import ' + BACKEND:<40} {backend:.3f} s")
    return 0


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
