"""Build actions on a Dask distributed cluster, while doit still decides what is out of date.

doit runs the build tasks as always; a build task of a variant whose executor is
``dask://host:port`` (the variant's ``executor``, ``AFFINEUR_EXECUTOR``, or
``doit --executor dask://host:port``, in increasing precedence) hands its build
to the cluster as one Dask task and waits for it on its doit thread. The worker
builds from the remote cache alone (:mod:`affineur.build._job`) and uploads the
result there; this run then takes it from the remote cache like any other entry.
affineur only needs the scheduler's address: start the cluster with whatever
runs your clusters (dask-kubernetes, dask-jobqueue for SLURM, ``dask scheduler``
and ``dask worker`` by hand).

Resource tags become Dask worker resources. Workers say what they have when they
start (``dask worker ADDRESS --resources "cpu=8 gpu=1"``); a build asking for
``gpu: 1`` then runs only where a GPU is advertised, and an ``exclusive`` build
asks for all the ``cpu`` of the largest workers, so it holds a whole worker. A
build asking for a resource no worker has is refused at once rather than left
waiting forever; ``cpu``, the default tag of every build, is simply not counted
when no worker advertises it (each worker's threads bound its builds then).

A worker that dies takes its build process with it, and the scheduler runs the
task again on another worker. Ending the run (Ctrl-C) cancels its tasks and
kills their build processes on every worker.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affineur.config import Variant, effective_executor
from affineur.errors import AffineurError
from affineur.progress import Notice, NullReporter, Reporter
from affineur.run._scheduler import Demand

if TYPE_CHECKING:
    # The build stage loads only when a build goes to a cluster: every run makes an
    # Executors, most never use one.
    from affineur.build import BuildJob

__all__ = ["DaskBuilds", "Executors", "dask_resources"]

CONNECT_TIMEOUT = "20s"


def dask_resources(demand: Demand, workers: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The Dask resources of a build's demand, given what each worker advertises.

    Pure, so the mapping is tested without a cluster. Raises when no worker
    could ever run the build.
    """
    advertised: dict[str, float] = {}
    for resources in workers.values():
        for name, amount in resources.items():
            advertised[name] = max(advertised.get(name, 0.0), float(amount))
    amounts = dict(demand.amounts)
    if not demand.exclusive and "cpu" not in amounts:
        # Every build occupies a worker thread: counting it as a cpu is what keeps
        # a gpu build off a worker an exclusive build holds whole.
        amounts["cpu"] = 1
    out: dict[str, float] = {}
    for name, amount in sorted(amounts.items()):
        if amount <= 0:
            continue
        if name == "cpu" and "cpu" not in advertised:
            continue
        if advertised.get(name, 0.0) < amount:
            has = (
                f"the most any worker advertises is {advertised[name]:g}"
                if name in advertised
                else "no worker advertises it"
            )
            raise AffineurError(
                f"the build asks for {amount:g} {name}, and {has}",
                hint=f'start workers with --resources "{name}=N", or lower the request',
                stage="config",
            )
        out[name] = amount
    if demand.exclusive:
        if "cpu" not in advertised:
            raise AffineurError(
                "an exclusive build needs workers that advertise their cpu",
                hint='start workers with --resources "cpu=N" (N: the worker\'s threads)',
                stage="config",
            )
        out["cpu"] = advertised["cpu"]
    return out


class DaskBuilds:
    """One run's connection to a Dask scheduler: submits builds, streams logs, cancels."""

    def __init__(self, address: str, reporter: Reporter) -> None:
        self.address = address
        self.reporter = reporter
        self.run = uuid.uuid4().hex
        self.topic = f"affineur-log-{self.run}"
        self._client: Any = None
        self._unreachable: AffineurError | None = None
        self._lock = threading.Lock()
        self._logs: dict[str, Path] = {}
        self._futures: set[Any] = set()

    def _connect(self) -> Any:
        with self._lock:
            if self._client is not None:
                return self._client
            if self._unreachable is not None:
                raise self._unreachable  # once per run, not a timeout per build
            try:
                from distributed import Client
            except ImportError:
                raise AffineurError(
                    "building on a Dask cluster needs affineur's 'dask' extra",
                    hint="pip install 'affineur[dask]'",
                    stage="config",
                ) from None
            try:
                client = Client(  # type: ignore[no-untyped-call]
                    f"tcp://{self.address}", timeout=CONNECT_TIMEOUT, set_as_default=False
                )
            except OSError as exc:
                self._unreachable = AffineurError(
                    f"cannot reach the Dask scheduler at {self.address} ({exc})",
                    hint="check the address, or build locally with --executor local",
                    stage="config",
                )
                raise self._unreachable from None
            client.subscribe_topic(self.topic, self._on_log)  # type: ignore[no-untyped-call]
            self._client = client
            return client

    def _on_log(self, event: tuple[float, Mapping[str, Any]]) -> None:
        message = event[1]
        path = self._logs.get(str(message.get("key")))
        if path is not None:
            with path.open("a") as log:
                log.write(str(message.get("text", "")))

    def _workers(self, client: Any) -> dict[str, dict[str, float]]:
        info = client.scheduler_info()
        workers = info.get("workers", {}) if isinstance(info, Mapping) else {}
        return {addr: dict(w.get("resources") or {}) for addr, w in workers.items()}

    def build(self, job: BuildJob, demand: Demand, log: Path) -> Mapping[str, Any]:
        """Run ``job`` on the cluster; its log streams into ``log`` meanwhile."""
        from affineur.build import result_error, run_on_worker

        client = self._connect()
        resources = dask_resources(demand, self._workers(client))
        job = replace(job, run=self.run)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        self._logs[job.key] = log
        name = f"affineur-build-{job.node.name}-{job.node.version}-{job.key[:12]}-{self.run[:8]}"
        future = client.submit(
            run_on_worker, job, self.topic, key=name, resources=resources or None, pure=False
        )
        self._futures.add(future)
        try:
            result: Mapping[str, Any] = future.result()
        except Exception as exc:
            # KilledWorker (the task killed every worker it was tried on), a
            # cancellation, or the connection to the scheduler lost.
            raise AffineurError(
                f"the cluster could not run the build: {type(exc).__name__}: {exc}",
                stage="build",
            ) from None
        finally:
            self._futures.discard(future)
            self._logs.pop(job.key, None)
        if not result.get("ok"):
            raise result_error(result)
        return result

    def close(self) -> None:
        """Cancel what is still running (Ctrl-C, a failed run) and disconnect."""
        client = self._client
        if client is None:
            return
        pending = list(self._futures)
        with contextlib.suppress(Exception):
            if pending:
                self.reporter.report(
                    Notice(f"cancelling {len(pending)} build(s) on {self.address}")
                )
                client.cancel(pending, force=True)
                # A running Python task cannot be interrupted; its build process can.
                from affineur.build import cancel_run

                client.run(cancel_run, self.run)
        with contextlib.suppress(Exception):
            client.close(timeout=5)
        self._client = None


class Executors:
    """Each variant's executor: None for this machine, else the cluster's :class:`DaskBuilds`.

    ``command_line`` is ``doit --executor``'s value, which wins over
    ``AFFINEUR_EXECUTOR``, which wins over the variant's ``executor``.
    """

    def __init__(
        self,
        environ: Mapping[str, str],
        command_line: str | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.reporter: Reporter = reporter or NullReporter()
        self.environ = environ
        self.command_line = command_line
        self._clusters: dict[str, DaskBuilds] = {}
        self._lock = threading.Lock()

    def __call__(self, variant: Variant) -> DaskBuilds | None:
        executor = effective_executor(variant.executor, self.environ, self.command_line)
        if executor.kind == "local":
            return None
        if importlib.util.find_spec("distributed") is None:
            raise AffineurError(
                f"building on {executor.url} needs affineur's 'dask' extra",
                hint="pip install 'affineur[dask]'",
                stage="config",
            )
        with self._lock:
            if executor.address not in self._clusters:
                self._clusters[executor.address] = DaskBuilds(executor.address, self.reporter)
            return self._clusters[executor.address]

    def close(self) -> None:
        with self._lock:
            clusters = list(self._clusters.values())
        for cluster in clusters:
            cluster.close()
