"""Long native builds are visible and bounded: a live row per build, compilers held to the
cpus a build was granted, a timeout."""

from __future__ import annotations

import json
import os
import re
import zipfile
from typing import Any

import pytest

from tests.ecosystem import FakeProject
from tests.test_live import ANSI, run_in_terminal
from tests.workspace import Workspace, ok

JOB_VARIABLES = ("MAKEFLAGS", "CMAKE_BUILD_PARALLEL_LEVEL", "CARGO_BUILD_JOBS")


def _seen(ws: Workspace, package: str) -> dict[str, Any]:
    (wheel,) = (ws.root / "dist/demo/cpu/files").glob(f"{package}-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        env: dict[str, Any] = json.loads(zf.read(f"{package}/_build_env.json"))["env"]
    return env


def _record(ws: Workspace, name: str) -> dict[str, Any]:
    for path in (ws.root / "build/cache").glob("*/record.json"):
        data: dict[str, Any] = json.loads(path.read_text())
        if data["name"] == name:
            return data
    raise AssertionError(f"no record of {name}")


@pytest.mark.slow
def test_a_build_runs_as_many_jobs_as_cpus_it_holds_and_has_a_timeout(
    workspace: Workspace,
) -> None:
    assert workspace.index is not None
    cpus = os.cpu_count() or 1
    names = ("native-all", "native-all-b", "native-one", "native-own")
    for name in names:
        workspace.index.add(FakeProject(name, "1.0", read_env=JOB_VARIABLES, build_seconds=1))
    workspace.collection(list(names))
    # Two builds that each hold every cpu of the machine.
    for name in ("native-all", "native-all-b"):
        workspace.write(f"overrides/{name}.yaml", f"resources: {{cpu: {cpus}}}\ntimeout: 1234\n")
    # An env the package (or its variant) sets wins over the count derived from its resources.
    workspace.write("overrides/native-own.yaml", "env: {MAKEFLAGS: -j7}\n")
    # Outside a terminal, a line per running build every half second here (every minute
    # by default): a long build's CI log shows it is alive and what it is doing.
    run = ok(workspace.doit("-n", "2", env={"AFFINEUR_HEARTBEAT": "0.5"}))
    assert re.search(
        r"still building cpu:native-all-1\.0 \(\d+(\.\d)?s\): "
        r"fakebackend: native-all 1\.0: building for 1\.0s",
        run.stdout,
    ), run.stdout

    for package in ("native_all", "native_all_b"):
        assert _seen(workspace, package) == {
            "MAKEFLAGS": f"-j{cpus}",
            "CMAKE_BUILD_PARALLEL_LEVEL": str(cpus),
            "CARGO_BUILD_JOBS": str(cpus),
        }
    assert _seen(workspace, "native_one") == {
        "MAKEFLAGS": "-j1",
        "CMAKE_BUILD_PARALLEL_LEVEL": "1",
        "CARGO_BUILD_JOBS": "1",
    }
    assert _seen(workspace, "native_own")["MAKEFLAGS"] == "-j7"
    first, second = _record(workspace, "native-all"), _record(workspace, "native-all-b")
    assert (first["jobs"], first["timeout"]) == (cpus, 1234)
    # With -n 2 they still ran one after the other: never twice the machine's compilers.
    spans = sorted((r["started"], r["started"] + r["seconds"]) for r in (first, second))
    assert spans[0][1] <= spans[1][0], spans
    # Without a timeout of its own a build gets the default, and says so.
    one = _record(workspace, "native-one")
    assert (one["jobs"], one["timeout"]) == (1, 4 * 3600)

    bad = workspace.doit(env={"AFFINEUR_HEARTBEAT": "soon"})
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "AFFINEUR_HEARTBEAT='soon' is not a number of seconds" in bad.stdout + bad.stderr


@pytest.mark.slow
def test_a_running_build_shows_its_elapsed_time_and_the_last_line_of_its_log(
    workspace: Workspace,
) -> None:
    assert workspace.index is not None
    workspace.index.add(FakeProject("long-native", "1.0", build_seconds=4))
    workspace.collection(["long-native"])
    ok(workspace.doit("lock"))
    status, raw = run_in_terminal(workspace, "-n", "2")
    assert status == 0, raw[-2000:]
    text = ANSI.sub("", raw)
    # Its row: the task, how long it has run, and what its backend printed last.
    row = r"cpu:long-native-1\.0\s+\d+(\.\d)?s\s+fakebackend: long-native 1\.0: building for 4\.0s"
    assert re.search(row, text), text[-3000:]
