"""One build, self-contained, for a machine that shares nothing with the checkout but storage.

A :class:`BuildJob` holds everything the build needs as data: the lock node, the
settings, the patch files' contents, the build keys of its build environment and
the remote cache setting. The machine running it takes the sdist and the
build-environment wheels from the remote cache (each verified), builds exactly as
a local build does (:class:`~affineur.build.Builder`), and uploads the result to
the remote cache, from where the submitting run picks it up. No path of the
submitting checkout is ever used, so no shared filesystem is assumed.

On a Dask worker, :func:`run_on_worker` runs the job in a child process
(:func:`job_main`) so that it can be killed as a whole (by a
cancelled run, or with the worker that started it) and streams the build log
back as worker events while it runs. Nothing here imports Dask until a worker
calls it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from packaging.utils import canonicalize_name

from affineur import graph as g
from affineur.build._builder import Builder, BuildRequest
from affineur.build._cache import BuildCache, CacheEntry
from affineur.build._key import BuildKey
from affineur.build._remote import RemoteCache
from affineur.config import Evidence, RemoteCacheSetting, SandboxSetting, Settings
from affineur.errors import AffineurError
from affineur.index import DistFile, SdistStore
from affineur.pep517 import Interpreter, find_interpreter
from affineur.progress import StreamReporter

__all__ = [
    "BuildJob",
    "cancel_run",
    "execute_job",
    "job_graph",
    "job_main",
    "result_error",
    "run_on_worker",
]


@dataclass(frozen=True)
class BuildJob:
    run: str
    """The submitting run, so that cancelling it can find its jobs on every worker."""
    key: BuildKey
    variant: str
    node: g.Node
    graph: g.Graph
    """The node and what its wheel's dependencies are checked against (see job_graph)."""
    settings: Settings
    patches: tuple[tuple[str, bytes], ...]
    env: tuple[tuple[BuildKey, str, str], ...]
    """(build key, name, version) of every build-environment member."""
    network_isolation: bool
    remote: RemoteCacheSetting
    sandbox: SandboxSetting = field(default_factory=SandboxSetting)
    """The variant's sandbox: a worker builds in the same one this machine would."""
    evidence: Evidence = field(default_factory=Evidence)
    """Site settings for the SBOM and provenance (they are in the build key)."""
    source_attestation: Mapping[str, Any] | None = None
    python: str = ""
    """The variant's Python (``3.12``), which the worker finds among its own."""
    python_key: str = ""
    """The exact interpreter the build key holds: a worker with another release refuses."""
    interpreter: str | None = None
    """The variant's ``interpreter:`` path, used where the worker has that file."""
    jobs: int | None = None
    """The cpus the build holds on its worker (see BuildRequest.jobs)."""
    crates: tuple[str, str] | None = None
    """(file name, sha256) of the archive of the node's vendored crates in the remote cache."""

    @property
    def label(self) -> str:
        return f"{self.node.name}=={self.node.version} ({self.variant})"


def job_graph(graph: g.Graph, node: g.Node) -> g.Graph:
    """The part of the lock a build reads: the node and its install dependencies.

    A thousand-node lock sent with every job would cost more than most builds.
    """
    keep = {node.key, *(e.key for e in node.edges_of("install"))}
    return replace(
        graph, toplevel=(), nodes={k: v for k, v in graph.nodes.items() if k in keep}, meta={}
    )


class _RemoteSources:
    """The sdist store's fetcher over the remote cache's sources (see SdistStore.ensure)."""

    def __init__(self, remote: RemoteCache, sha256: str) -> None:
        self.remote = remote
        self.sha256 = sha256

    def find_file(self, project: str, filename: str) -> DistFile:
        return DistFile(
            project=canonicalize_name(project),
            filename=filename,
            url="",
            kind="sdist",
            version=None,
            sha256=self.sha256,
        )

    def download(self, file: DistFile, dest: Path) -> Path:
        return self.remote.fetch_sdist(file.filename, self.sha256, dest)


def execute_job(job: BuildJob, scratch: Path) -> CacheEntry:
    """Build ``job`` under ``scratch`` and upload it; the uploaded entry."""
    reporter = StreamReporter(sys.stderr)
    remote = RemoteCache(job.remote, reporter=reporter)
    if not remote.writable:
        raise AffineurError(f"the remote cache {job.remote.url} is read-only here", stage="config")
    cache = BuildCache(scratch / "cache")
    store = SdistStore(scratch / "sdists")
    entry = cache.get(job.key)
    if entry is None:
        wheels = []
        for key, name, version in job.env:
            found = cache.get(key) or remote.fetch(key, cache, name=name, version=version)
            if found is None:
                raise AffineurError(
                    f"{name}=={version}, of the build environment, is not in the remote cache",
                    stage="build-env",
                    hint="the submitting run uploads build environments first; run it again",
                )
            wheels.append(found.wheel)
        sdist = job.node.sdist
        assert sdist is not None
        store.ensure(
            job.node.name, sdist.filename, sdist.sha256, _RemoteSources(remote, sdist.sha256)
        )
        if job.crates is not None and job.node.crates is not None:
            from affineur.pep517 import CrateStore

            filename, sha = job.crates
            archive = store.ensure(job.node.name, filename, sha, _RemoteSources(remote, sha))
            CrateStore(store.root / "crates").unpack(archive, job.node.crates.sha256)
        patch_dir = scratch / "patches" / f"{job.key[:16]}-{uuid.uuid4().hex[:8]}"
        patch_dir.mkdir(parents=True)
        patches = []
        for name, data in job.patches:
            # Under a patches/ folder, by its path below overrides/patches/: the SBOM
            # and provenance name a patch by that path, wherever the build runs.
            path = patch_dir / "patches" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            patches.append(path)
        request = BuildRequest(
            node=job.node,
            key=job.key,
            variant=job.variant,
            target=job.graph.target,
            settings=job.settings,
            patches=patches,
            env_wheels=wheels,
            network_isolation=job.network_isolation,
            sandbox=job.sandbox,
            evidence=job.evidence,
            env_keys=[key for key, _, _ in job.env],
            source_attestation=job.source_attestation,
            interpreter=_worker_interpreter(job),
            jobs=job.jobs,
        )
        entry = Builder(cache=cache, store=store, workdir=scratch).build(request, job.graph)
    if not remote.push(entry):
        raise AffineurError(
            f"built {entry.wheel.name}, but could not upload it to {job.remote.url}",
            stage="build",
            hint="check the workers' access to the remote cache",
        )
    return entry


def _worker_interpreter(job: BuildJob) -> Interpreter | None:
    """This worker's interpreter for the job's Python, which must be the one in its key."""
    if not job.python:
        return None
    explicit = job.interpreter if job.interpreter and Path(job.interpreter).exists() else None
    found = find_interpreter(job.python, explicit=explicit, variant=job.variant)
    if job.python_key and found.key() != job.python_key:
        raise AffineurError(
            f"this worker's Python {job.python} is {found.key()}, but the build key "
            f"holds {job.python_key}",
            stage="config",
            hint="give the workers the same Python release as the machine that runs doit",
        )
    return found


def job_main(argv: Sequence[str]) -> int:
    """The child process: ``JOB_FILE SCRATCH RESULT_FILE``; the result is JSON."""
    import cloudpickle

    signal.signal(signal.SIGTERM, _kill_tree_and_exit)
    job_file, scratch, result_file = (Path(a) for a in argv)
    job: BuildJob = cloudpickle.loads(job_file.read_bytes())
    result: dict[str, Any]
    try:
        entry = execute_job(job, scratch)
        result = {"ok": True, "wheel": entry.wheel.name}
    except AffineurError as exc:
        result = {
            "ok": False,
            "error": exc.message,
            "stage": exc.stage or "build",
            "causes": list(exc.causes),
            "hint": exc.hint,
        }
    tmp = result_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(result_file)
    return 0


# --- on a Dask worker ---------------------------------------------------------------------

_CHILD = "import sys; from affineur.build import job_main; sys.exit(job_main(sys.argv[1:]))"
_RUNNING: dict[str, set[subprocess.Popen[bytes]]] = {}
_RUNNING_LOCK = threading.Lock()


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: a worker that dies (or is killed) signals its build, which
    # then ends its whole process tree (see _kill_tree_and_exit), instead of
    # finishing and uploading for a run that moved on.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _kill_tree_and_exit(signum: int, frame: object) -> None:
    """SIGTERM in the job process: its hook processes (own sessions, namespaces) go too."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
    os._exit(128 + signum)


def cancel_run(run: str) -> int:
    """Kill every job of ``run`` on this worker (called on each worker by a cancelled run).

    The whole process tree goes: hook processes run in sessions and namespaces
    of their own, out of reach of a process-group kill.
    """
    import psutil  # a dependency of distributed, so present wherever this runs

    with _RUNNING_LOCK:
        procs = list(_RUNNING.get(run, ()))
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            tree = psutil.Process(proc.pid)
            for child in [tree, *tree.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    child.kill()
    return len(procs)


class _Tail:
    """New text of the build log, which the builder writes in its staging directory."""

    def __init__(self, cache: Path, key: str) -> None:
        self.pattern = f".staging-{key[:16]}-*/build.log"
        self.cache = cache
        self.handle: IO[str] | None = None

    def read(self) -> str:
        if self.handle is None:
            found = sorted(self.cache.glob(self.pattern))
            if not found:
                return ""
            try:
                # The open handle keeps reading after the staging folder is renamed.
                self.handle = found[0].open(errors="replace")
            except OSError:
                return ""
        return self.handle.read()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def run_on_worker(job: BuildJob, topic: str) -> dict[str, Any]:
    """The Dask task: run ``job`` in a child process, streaming its log to ``topic``."""
    from distributed import get_worker

    worker = get_worker()
    scratch = Path(worker.local_directory) / "affineur"
    jobs = scratch / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    stem = f"{job.key[:16]}-{uuid.uuid4().hex[:8]}"
    job_file, result_file, out_file = (jobs / f"{stem}{s}" for s in (".pickle", ".json", ".out"))
    import cloudpickle

    job_file.write_bytes(cloudpickle.dumps(job))

    def send(text: str) -> None:
        if text:
            worker.log_event(topic, {"key": job.key, "text": text})

    send(f"=== {job.label} on {worker.address}\n")
    tail = _Tail(scratch / "cache", job.key)
    with out_file.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(job_file), str(scratch), str(result_file)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    with _RUNNING_LOCK:
        _RUNNING.setdefault(job.run, set()).add(proc)
    try:
        while True:
            finished = proc.poll() is not None
            send(tail.read())
            if finished:
                break
            time.sleep(0.25)
    finally:
        tail.close()
        with _RUNNING_LOCK:
            _RUNNING.get(job.run, set()).discard(proc)
    try:
        result: dict[str, Any] = json.loads(result_file.read_text())
    except (OSError, ValueError):
        said = out_file.read_text(errors="replace").splitlines()[-20:]
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        result = {
            "ok": False,
            "error": f"the build process on {worker.address} ended ({how}) without a result",
            "stage": "build",
            "causes": said,
            "hint": None,
        }
    if not result["ok"]:
        send(out_file.read_text(errors="replace"))
    for path in (job_file, result_file, out_file):
        path.unlink(missing_ok=True)
    result["worker"] = worker.address
    return result


def result_error(result: Mapping[str, Any]) -> AffineurError:
    """The error a failed job reported, as the submitting run raises it."""
    return AffineurError(
        str(result.get("error") or "the remote build failed"),
        stage=result.get("stage") or "build",
        causes=tuple(result.get("causes") or ()),
        hint=result.get("hint"),
    )
