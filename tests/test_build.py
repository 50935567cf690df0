"""`doit build` end to end over the fake ecosystem: tasks, cache, isolation, incrementality."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.ecosystem import FIXED_EPOCH, SELF_HOSTED, FakeProject, IndexFile
from tests.workspace import Workspace, ok


def records(ws: Workspace) -> dict[str, dict[str, Any]]:
    found = {}
    for path in (ws.root / "build" / "cache").glob("*/record.json"):
        data = json.loads(path.read_text())
        found[f"{data['name']}=={data['version']}"] = data
    return found


def dist_wheel(ws: Workspace, prefix: str) -> Path:
    (wheel,) = (ws.root / "dist/demo/cpu/files").glob(f"{prefix}-*.whl")
    return wheel


@pytest.mark.slow
def test_builds_the_tree_and_publishes_an_installable_index(
    workspace: Workspace, tmp_path: Path
) -> None:
    workspace.collection(["app"])
    ok(workspace.doit("-n", "2"))
    assert workspace.executed() == [
        "build:cpu:app-1.0",
        "build:cpu:chain-backend-1.0",
        "build:cpu:chain-base-1.0",
        "build:cpu:chain-helper-1.0",
        "build:cpu:fakebuild-core-1.0",
        "build:cpu:lib-a-1.0",
        "build:cpu:lib-c-1.0",
        "build:cpu:lib-fast-1.0",
    ]
    wheel = dist_wheel(workspace, "app")
    with zipfile.ZipFile(wheel) as zf:
        record = json.loads(zf.read("app-1.0.dist-info/affineur/build.json"))
        seen = json.loads(zf.read("app/_build_env.json"))
        assert (
            "app-1.0.dist-info/affineur/build.json" in zf.read("app-1.0.dist-info/RECORD").decode()
        )
    assert record["build_env"] == ["chain-backend==1.0"]
    assert record["build_key"] == records(workspace)["app==1.0"]["build_key"]
    assert seen["origin"] == "built"
    assert seen["source_date_epoch"] == str(FIXED_EPOCH)

    venv = tmp_path / "venv"
    # A venv without pip, filled by this interpreter's pip: no ensurepip.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    simple = (workspace.root / "dist/demo/cpu/simple").as_uri()
    env = {**workspace.environ(), "PIP_CONFIG_FILE": os.devnull}
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin/python")]
    install = subprocess.run(
        [*pip, "install", "--index-url", simple, "app"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    assert "lib-fast" in install.stdout.replace("_", "-")


def test_second_run_does_nothing_and_uses_no_network(workspace: Workspace) -> None:
    workspace.collection(["lib-c"])  # lib-c is built with fakebuild-core: a build edge
    ok(workspace.doit())
    assert workspace.executed() == ["build:cpu:fakebuild-core-1.0", "build:cpu:lib-c-1.0"]
    workspace.index.clear_requests()
    ok(workspace.doit())
    assert workspace.executed() == []
    assert set(workspace.outcomes().values()) == {"uptodate"}
    assert workspace.index.requests == []


def test_a_published_index_missing_a_wheel_or_a_page_is_published_again(
    workspace: Workspace,
) -> None:
    workspace.collection(["lib-c"])
    ok(workspace.doit())
    dist = workspace.root / "dist/demo/cpu"
    wheel = dist_wheel(workspace, "lib_c")
    whole = wheel.read_bytes()
    page = dist / "simple/lib-c/index.html"

    def damaged_then_mended(damage: str) -> None:
        ok(workspace.doit())
        assert workspace.executed() == [], damage  # nothing built again: only published
        assert dist_wheel(workspace, "lib_c").read_bytes() == whole, damage
        assert page.is_file(), damage

    wheel.unlink()
    damaged_then_mended("a wheel removed")
    dist_wheel(workspace, "lib_c").chmod(0o644)
    dist_wheel(workspace, "lib_c").write_bytes(whole[:100])
    damaged_then_mended("a wheel cut short")
    page.unlink()
    damaged_then_mended("a project page removed")
    ok(workspace.doit())
    assert set(workspace.outcomes().values()) == {"uptodate"}


@pytest.mark.slow
def test_a_lock_change_rebuilds_only_the_package_and_what_was_built_with_it(
    workspace: Workspace,
) -> None:
    workspace.collection(["app", "lib-fast"])
    ok(workspace.doit())
    workspace.index.add(
        FakeProject(
            "chain-helper",
            "1.1",
            requires=("chain-base>=1",),
            provides_backend=True,
            backend_imports=("chain_base",),
        )
    )
    ok(workspace.cli("lock", "--upgrade", "chain-helper"))
    ok(workspace.doit())
    # chain-helper builds chain-backend, which builds app; libraries are untouched.
    assert workspace.executed() == [
        "build:cpu:app-1.0",
        "build:cpu:chain-backend-1.0",
        "build:cpu:chain-helper-1.1",
    ]


def test_a_cached_key_completes_without_building(workspace: Workspace) -> None:
    workspace.collection(["lib-fast"])
    ok(workspace.doit())
    before = records(workspace)["lib-fast==1.0"]
    # A fresh clone beside a kept cache: doit remembers nothing, the cache has the key.
    # (`doit forget` is different: it asks for the build again, see test_forcing.py.)
    shutil.rmtree(workspace.root / ".affineur" / "doit-state")
    ok(workspace.doit())
    assert workspace.outcomes()["build:cpu:lib-fast-1.0"] == "reused"
    assert records(workspace)["lib-fast==1.0"] == before


def test_doit_list_and_info_show_every_package(workspace: Workspace) -> None:
    workspace.collection(["app"])
    ok(workspace.doit("lock"))
    listed = ok(workspace.doit("list", "--all")).stdout
    assert "build:cpu:chain-helper-1.0" in listed
    assert "publish:demo:cpu" in listed
    # doit info exits 1 for a task that would run; what it shows is the point.
    info = workspace.doit("info", "build:cpu:app-1.0")
    assert "Traceback" not in info.stderr
    assert "status     : run" in info.stdout
    assert "build:cpu:chain-backend-1.0" in info.stdout


@pytest.mark.slow
def test_rebuild_gives_identical_wheels(workspace: Workspace) -> None:
    workspace.collection(["lib-a"])
    ok(workspace.doit())
    first = dist_wheel(workspace, "lib_a").read_bytes()
    for record in (workspace.root / "build/cache").glob("*/record.json"):
        record.unlink()
    ok(workspace.doit("forget"))
    ok(workspace.doit())
    assert dist_wheel(workspace, "lib_a").read_bytes() == first


def _tamper_lock(ws: Workspace, key: str, req_type: str) -> None:
    path = ws.root / "lock/demo/cpu/graph.json"
    data = json.loads(path.read_text())
    node = data["nodes"][key]
    node["edges"] = [e for e in node["edges"] if e["req_type"] != req_type]
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def test_wheel_dependencies_are_checked_against_the_lock(workspace: Workspace) -> None:
    workspace.collection(["meta-static"])
    ok(workspace.doit("lock"))
    _tamper_lock(workspace, "meta-static==1.0", "install")
    result = workspace.doit("build")
    assert result.returncode != 0
    assert "the built wheel's dependencies differ from the lock" in result.stdout + result.stderr
    assert "meta-dep>=1, which the lock does not have" in result.stdout + result.stderr
    assert "meta-static==1.0" not in records(workspace)


def test_a_malicious_sdist_is_refused(workspace: Workspace) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (
            ("evil-1.0/PKG-INFO", b"Metadata-Version: 2.2\nName: evil\nVersion: 1.0\n"),
            ("evil-1.0/../../outside.txt", b"escaped"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    workspace.index.add(IndexFile("evil", "1.0", "evil-1.0.tar.gz", buffer.getvalue()))
    workspace.collection(["evil"])
    result = workspace.doit("lock")
    assert result.returncode != 0
    assert "outside.txt" in result.stderr + result.stdout
    assert not (workspace.root.parent / "outside.txt").exists()


@pytest.mark.slow
def test_exclusive_and_counted_resources_hold_in_a_parallel_run(workspace: Workspace) -> None:
    # One run, both rules: lib-a is exclusive, meta-static takes both cpus, every
    # other build takes one; four workers would overlap them all if allowed.
    workspace.variant("cpu", "resources: {cpu: 2}\n")
    workspace.collection(["app", "meta-static", "env-reader", "dyn-requires", "multi"])
    workspace.write("overrides/lib-a.yaml", "resources: {exclusive: true}\n")
    workspace.write("overrides/meta-static.yaml", "resources: {cpu: 2}\n")
    ok(workspace.doit("-n", "4"))
    recs = records(workspace)
    assert len(recs) >= 10
    spans = {k: (r["started"], r["started"] + r["seconds"]) for k, r in recs.items()}
    start, end = spans["lib-a==1.0"]
    for other, (s, e) in spans.items():
        if other != "lib-a==1.0":
            assert e <= start or s >= end, f"{other} overlapped lib-a==1.0"
    demand = {k: {"lib-a==1.0": 0, "meta-static==1.0": 2}.get(k, 1) for k in recs}
    events = sorted(
        [(span[0], demand[k]) for k, span in spans.items()]
        + [(span[1], -demand[k]) for k, span in spans.items()],
        key=lambda e: (e[0], e[1]),
    )
    in_use = 0
    for _, delta in events:
        in_use += delta
        assert in_use <= 2


def test_a_request_larger_than_capacity_is_a_load_error(workspace: Workspace) -> None:
    workspace.collection(["lib-fast"])
    workspace.write("overrides/lib-fast.yaml", "resources: {gpu: 1}\n")
    result = workspace.doit()
    assert result.returncode != 0
    assert "asks for 1 gpu" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_killed_build_leaves_no_wheel_and_the_next_run_finishes_it(
    workspace: Workspace, tmp_path: Path
) -> None:
    (tmp_path / "gate").mkdir()
    hold = tmp_path / "gate" / "hold"
    hold.touch()
    # The build blocks while the file exists: the test decides when it may finish. The
    # sandbox shows builds nothing of the host, so the variant lets them read the gate.
    workspace.variant("cpu", f"sandbox: {{read_only: [{str(tmp_path / 'gate')!r}]}}\n")
    marker = f"import os, time\nwhile os.path.exists({str(hold)!r}):\n    time.sleep(0.05)\n"
    slow = FakeProject(
        "slow",
        "1.0",
        build_imports=("slow_marker",),
        extra_files={"_backend/slow_marker.py": marker},
    )
    workspace.index.add(slow)
    workspace.collection(["lib-fast", "slow"])
    ok(workspace.doit("lock"))
    ok(workspace.doit("build:cpu:lib-fast-1.0"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "doit", "build"],
        cwd=workspace.root,
        env=workspace.environ(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # slow's build has begun once its staging log shows the build_wheel hook.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        logs = (workspace.root / "build/cache").glob(".staging-*/build.log")
        if any("build_wheel" in log.read_text(errors="replace") for log in logs):
            break
        time.sleep(0.2)
    time.sleep(0.5)
    work = workspace.root / "build" / "work"
    assert _processes_working_in(work), "the build is not running"
    # SIGKILL of doit alone (not its process group): the build must die with it.
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while _processes_working_in(work) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_working_in(work) == []
    assert "slow==1.0" not in records(workspace)
    assert not list((workspace.root / "build/cache").glob("*/slow-*.whl"))
    assert list((workspace.root / "build/cache").glob(".staging-*"))  # the killed build's
    assert list(work.iterdir())  # and its work folder
    # A publish killed half-way leaves its new index beside the old one.
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    half_published = workspace.root / "dist" / "demo" / f".cpu.{finished.pid}.new"
    half_published.mkdir(parents=True)
    hold.unlink()
    ok(workspace.doit())
    assert workspace.executed() == ["build:cpu:slow-1.0"]
    assert "slow==1.0" in records(workspace)
    assert not list((workspace.root / "build/cache").glob(".staging-*"))
    assert not list(work.iterdir())
    assert not half_published.exists()
    # Every build record says how long it was allowed to take (the default here).
    assert records(workspace)["slow==1.0"]["timeout"] == 4 * 3600


def _processes_working_in(folder: Path) -> list[int]:
    """Processes whose current directory is inside ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = str((entry / "cwd").readlink())
        except OSError:
            continue
        if cwd.startswith(str(folder)):
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_collections_locking_one_version_with_different_build_tools(workspace: Workspace) -> None:
    workspace.index.add(
        FakeProject("fakebuild-core", "1.1", provides_backend=True, backend=SELF_HOSTED)
    )
    workspace.collection(["lib-c"], name="old", constraints=("fakebuild-core<1.1",))
    workspace.collection(["lib-c"], name="new")
    ok(workspace.doit())
    tasks = workspace.outcomes()
    # One task per build key: the second gets the key's start in its name.
    assert len([t for t in tasks if t.startswith("build:cpu:lib-c-1.0@")]) == 1
    assert "build:cpu:lib-c-1.0" in tasks
    built_with = {
        json.loads(p.read_text())["build_env"][0]
        for p in (workspace.root / "build/cache").glob("*/record.json")
        if json.loads(p.read_text())["name"] == "lib-c"
    }
    assert built_with == {"fakebuild-core==1.0", "fakebuild-core==1.1"}


@pytest.mark.slow
def test_a_damaged_cache_entry_is_discarded_rebuilt_and_never_published(
    workspace: Workspace,
) -> None:
    workspace.collection(["lib-fast"])
    ok(workspace.doit())
    (entry,) = [p.parent for p in (workspace.root / "build/cache").glob("*/record.json")]
    record = json.loads((entry / "record.json").read_text())
    wheel = entry / record["wheel"]
    assert record["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert record["size"] == wheel.stat().st_size
    published = dist_wheel(workspace, "lib_fast")
    # A copy, not a hard link to the cache: readable by a web server, writable by no one else.
    assert published.stat().st_ino != wheel.stat().st_ino
    assert stat.S_IMODE(published.stat().st_mode) == 0o644

    # Corrupted in place, same size: the next run sees it, builds again, publishes the good one.
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wheel.chmod(0o644)
    wheel.write_bytes(bytes(data))
    result = ok(workspace.doit())
    assert "differs from its record" in result.stdout + result.stderr
    assert workspace.outcomes()["build:cpu:lib-fast-1.0"] == "built"
    rebuilt = json.loads((entry / "record.json").read_text())
    assert hashlib.sha256(published.read_bytes()).hexdigest() == rebuilt["sha256"]

    # Deleted from its entry: the task is not up to date, and publishing never sees a gap.
    (entry / rebuilt["wheel"]).unlink()
    result = ok(workspace.doit())
    assert "its wheel lib_fast-1.0-py3-none-any.whl is missing" in result.stdout + result.stderr
    assert workspace.outcomes()["build:cpu:lib-fast-1.0"] == "built"
    assert not list((workspace.root / "dist/demo").glob(".*"))
    # A no-op run hashes nothing it verified before.
    assert ok(workspace.doit()).stdout.count("discarded") == 0


@pytest.mark.slow
def test_a_wheel_of_another_package_never_enters_the_cache(workspace: Workspace) -> None:
    workspace.collection(["lib-fast", "meta-dep"])
    ok(workspace.doit("lock"))
    graph_path = workspace.root / "lock/demo/cpu/graph.json"
    data = json.loads(graph_path.read_text())
    # meta-dep's sdist recorded under lib-fast's node: it builds, but not the locked package.
    data["nodes"]["lib-fast==1.0"]["sdist"] = data["nodes"]["meta-dep==1.0"]["sdist"]
    graph_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    result = workspace.doit("build")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "the built wheel meta_dep-1.0-py3-none-any.whl is not what the lock says" in output
    assert "the wheel is meta-dep 1.0, but the lock node is lib-fast 1.0" in output
    assert "lib-fast==1.0" not in records(workspace)
