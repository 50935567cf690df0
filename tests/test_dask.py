"""Builds on a Dask cluster, end to end: a real LocalCluster of worker processes on 127.0.0.1.

Two workers, each with its own scratch directory, one advertising a GPU; they
share nothing with the checkout but the remote cache (an S3 server on
127.0.0.1). doit runs in a subprocess as a user runs it, with ``--executor``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from affineur.errors import AffineurError
from affineur.run._dask import dask_resources
from affineur.run._scheduler import Demand
from tests.ecosystem import FakeIndex, FakeProject
from tests.ecosystem.cargo import FakeCrateRegistry, tinyadd
from tests.storage import S3Server
from tests.test_rust import import_rust_adder, needs_rust, rust_workspace
from tests.workspace import Workspace, make_workspace, ok

BUCKET = "cluster-cache"


def test_resource_tags_become_worker_resources() -> None:
    workers = {"a": {"cpu": 4.0}, "b": {"cpu": 8.0, "gpu": 1.0}}
    assert dask_resources(Demand(amounts={"cpu": 1}), workers) == {"cpu": 1}
    assert dask_resources(Demand(amounts={"cpu": 1, "gpu": 1}), workers) == {"cpu": 1, "gpu": 1}
    # Exclusive: all the cpu of the largest workers, so nothing else runs beside it.
    assert dask_resources(Demand(exclusive=True), workers) == {"cpu": 8}
    # Workers that count no cpu: their threads bound the builds instead.
    assert dask_resources(Demand(amounts={"cpu": 1}), {"a": {}}) == {}
    with pytest.raises(AffineurError, match="asks for 2 gpu, and the most any worker"):
        dask_resources(Demand(amounts={"gpu": 2}), workers)
    with pytest.raises(AffineurError, match="no worker advertises it"):
        dask_resources(Demand(amounts={"memory_gb": 1}), workers)
    with pytest.raises(AffineurError, match="exclusive build needs workers that advertise"):
        dask_resources(Demand(exclusive=True), {"a": {}})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> Iterator[Any]:
    from distributed import Client, LocalCluster, Nanny

    scratch = tmp_path_factory.mktemp("workers")
    local = LocalCluster(
        n_workers=0,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address="127.0.0.1:0",
    )
    # The workers' credentials for the remote cache come from their own environment.
    env = {**s3.env, "AWS_ENDPOINT_URL": s3.url}
    for name, resources in (("plain", {"cpu": 2}), ("gpu", {"cpu": 2, "gpu": 1})):
        local.worker_spec[name] = {
            "cls": Nanny,
            "options": {
                "nthreads": 2,
                "resources": resources,
                "host": "127.0.0.1",
                "local_directory": str(scratch / name),
                "dashboard": False,
                "env": env,
            },
        }
    local.sync(local._correct_state)
    client = Client(local)
    client.wait_for_workers(2)
    try:
        yield client
    finally:
        client.close()
        local.close()


def address(client: Any) -> str:
    return str(client.scheduler.address).removeprefix("tcp://")


def gpu_workers(client: Any) -> set[str]:
    workers = client.scheduler_info()["workers"]
    return {a for a, w in workers.items() if (w.get("resources") or {}).get("gpu")}


def checkout(
    root: Path, index: FakeIndex, s3: S3Server, requirements: list[str], extra: str = ""
) -> Workspace:
    s3.client().create_bucket(Bucket=f"{BUCKET}-{root.name}")
    ws = make_workspace(root, index)
    ws.variant(extra=s3.variant_setting(f"{BUCKET}-{root.name}") + extra)
    ws.collection(requirements)
    return ws


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def build_processes(name: str) -> list[int]:
    """Host pids of the hook processes building ``name`` (by their working folder: the pid
    a backend prints is its pid inside the build sandbox's own pid namespace)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = str((entry / "cwd").readlink())
        except OSError:
            continue
        if "/work/" in cwd and f".{name}-" in cwd:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def processing(client: Any, name: str) -> str | None:
    for worker, keys in client.processing().items():
        if any(name in str(k) for k in keys):
            return str(worker)
    return None


def built_on(output: str) -> dict[str, str]:
    return dict(re.findall(r"built (\S+?)-\d\S*\.whl on (tcp://\S+)", output))


@pytest.mark.slow
def test_the_tree_builds_on_the_cluster_and_survives_a_lost_worker(
    tmp_path: Path, fake_index: FakeIndex, s3: S3Server, cluster: Any
) -> None:
    fake_index.add(
        FakeProject("gpu-lib", "1.0", summary="needs a GPU to build"),
        FakeProject("whole-box", "1.0", summary="holds a whole worker"),
        FakeProject("slow-lib", "1.0", summary="still building when its worker dies",
                    build_seconds=15),
    )  # fmt: skip
    # The variant names the cluster; the next test uses doit --executor instead.
    ws = checkout(
        tmp_path / "ws",
        fake_index,
        s3,
        ["app", "gpu-lib", "whole-box", "slow-lib"],
        extra=f"executor: dask://{address(cluster)}\n",
    )
    ws.write("overrides/gpu-lib.yaml", "resources: {gpu: 1}\n")
    ws.write("overrides/whole-box.yaml", "resources: {exclusive: true}\n")
    ok(ws.doit("lock"))
    gpus = gpu_workers(cluster)

    run = subprocess.Popen(
        [sys.executable, "-m", "doit"],
        cwd=ws.root,
        env=ws.environ(s3.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # The build log streams back while the build runs on the worker.
        log = ws.root / "build/logs/cpu/slow-lib-1.0.log"
        text = wait_for(
            lambda: log.is_file() and "building for" in log.read_text() and log.read_text(),
            300,
            "slow-lib",
        )
        assert text
        backends = wait_for(lambda: build_processes("slow-lib"), 30, "slow-lib's processes")
        victim = processing(cluster, "slow-lib")
        assert victim is not None
        pid = cluster.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        # The dead worker's build goes with it, well before its 15 s are up.
        wait_for(lambda: not any(alive(b) for b in backends), 10, "the lost worker's build to die")
        output, _ = run.communicate(timeout=600)
    finally:
        run.kill()
    assert run.returncode == 0, output
    gpus |= gpu_workers(cluster)  # the killed worker comes back under a new address

    outcomes = ws.outcomes()
    assert set(outcomes.values()) == {"built"}, outcomes
    assert len(outcomes) == 11
    where = built_on(output)
    assert where["gpu_lib"] in gpus
    assert where["slow_lib"] != victim
    # Each build's record says when it ran; nothing overlapped the exclusive one on its worker.
    spans: dict[str, tuple[float, float]] = {}
    for record_file in (ws.root / "build/cache").glob("*/record.json"):
        record = json.loads(record_file.read_text())
        spans[record["wheel"].split("-")[0]] = (
            record["started"],
            record["started"] + record["seconds"],
        )
    start, end = spans["whole_box"]
    for wheel, (s, e) in spans.items():
        if wheel != "whole_box" and where[wheel] == where["whole_box"]:
            assert e <= start or s >= end, f"{wheel} ran beside the exclusive build"
    # The per-package log holds what the worker printed, the entry keeps it.
    entry_log = next(
        p.parent / "build.log"
        for p in (ws.root / "build/cache").glob("*/record.json")
        if json.loads(p.read_text())["name"] == "slow-lib"
    )
    assert "building for 15.0s" in entry_log.read_text()
    # An installable index, published from what the cluster built.
    assert len(list((ws.root / "dist/demo/cpu/files").glob("*.whl"))) == 11


@pytest.mark.slow
def test_ctrl_c_cancels_the_builds_on_the_cluster(
    tmp_path: Path, fake_index: FakeIndex, s3: S3Server, cluster: Any
) -> None:
    fake_index.add(FakeProject("endless", "1.0", summary="builds for a long time",
                               build_seconds=300))  # fmt: skip
    ws = checkout(tmp_path / "ctrlc", fake_index, s3, ["endless"])
    ok(ws.doit("lock"))
    run = subprocess.Popen(
        [sys.executable, "-m", "doit", "--executor", f"dask://{address(cluster)}"],
        cwd=ws.root,
        env=ws.environ(s3.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        log = ws.root / "build/logs/cpu/endless-1.0.log"
        text = wait_for(
            lambda: log.is_file() and "building for" in log.read_text() and log.read_text(),
            300,
            "the endless build",
        )
        assert text
        backends = wait_for(lambda: build_processes("endless"), 30, "the endless build's processes")
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode != 0
    assert "cancelling 1 build(s)" in output
    wait_for(lambda: processing(cluster, "endless") is None, 30, "the task to go")
    wait_for(lambda: not any(alive(b) for b in backends), 30, "the build process to die")


@needs_rust
@pytest.mark.slow
def test_a_rust_extension_builds_on_the_cluster_with_its_vendored_crates(
    tmp_path: Path,
    empty_fake_index: FakeIndex,
    s3: S3Server,
    cluster: Any,
    rust_backend_wheels: list[Path],
) -> None:
    with FakeCrateRegistry() as registry:
        registry.add(tinyadd())
        ws, env = rust_workspace(tmp_path, empty_fake_index, registry, rust_backend_wheels)
        bucket = f"{BUCKET}-rust"
        s3.client().create_bucket(Bucket=bucket)
        ws.variant(
            extra=s3.variant_setting(bucket)
            + f"executor: dask://{address(cluster)}\n"
            + f"crates_index: {json.dumps(registry.url)}\n"
        )
        ok(ws.doit("lock", env=env))
        asked = len(registry.requests)
        done = ok(ws.doit(env={**env, **s3.env}))
        # The worker got the vendored tree through the remote cache, not from the registry.
        assert registry.requests[asked:] == []
    assert "rust_adder" in built_on(done.stdout + done.stderr)
    (wheel,) = (ws.root / "dist/demo/cpu/files").glob("rust_adder-*.whl")
    total, probe = import_rust_adder(wheel, tmp_path / "installed")
    assert total == 42
    assert str(probe).startswith("failed"), probe
