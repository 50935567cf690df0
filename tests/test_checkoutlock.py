"""One run per checkout: a second one waits, or stops when told not to wait."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from affineur.errors import AffineurError
from affineur.run import TIMEOUT_ENV, hold_checkout, mutex_path
from tests.paths import REPO
from tests.test_scheduler import checkout, doit, runs

HOLD = """
import sys, time
from pathlib import Path
from affineur.run._mutex import hold_checkout
with hold_checkout(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@contextmanager
def holder(root: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), str(seconds)],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_no_wait_names_the_holder(tmp_path: Path) -> None:
    with (
        holder(tmp_path, 30) as proc,
        pytest.raises(AffineurError) as info,
        hold_checkout(tmp_path, timeout=0),
    ):
        pass
    assert f"(pid {proc.pid})" in info.value.message


def test_a_second_run_waits_once_then_gets_the_lock(tmp_path: Path) -> None:
    out = io.StringIO()
    with holder(tmp_path, 0.5) as proc:
        began = time.monotonic()
        with hold_checkout(tmp_path, stream=out):
            waited = time.monotonic() - began
            assert mutex_path(tmp_path).read_text() == f"{os.getpid()}\n"
    assert waited > 0.2
    assert (
        out.getvalue() == f"waiting for another affineur run in this checkout (pid {proc.pid})…\n"
    )


def test_a_timeout_gives_up(tmp_path: Path) -> None:
    with (
        holder(tmp_path, 30),
        pytest.raises(AffineurError, match="holds this checkout"),
        hold_checkout(tmp_path, timeout=0.3, stream=io.StringIO()),
    ):
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    with holder(tmp_path, 30):
        pass  # killed on exit
    with hold_checkout(tmp_path, timeout=0):
        pass


def test_a_bad_timeout_setting_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(AffineurError, match=TIMEOUT_ENV), hold_checkout(tmp_path):
        pass


def wait_for_holder(root: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        if mutex_path(root).exists() and mutex_path(root).read_text().strip():
            return
        time.sleep(0.02)
    raise AssertionError("the first run never took the lock")


def test_two_doit_runs_in_one_checkout(tmp_path: Path) -> None:
    root = checkout(tmp_path / "co", {"cpu": 1}, [{"name": "slow", "seconds": 1.0}])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "SCHEDULER_SPEC": str(root / "spec.json")}
    first = subprocess.Popen(
        [sys.executable, "-m", "doit", "-f", str(REPO / "tests/data/scheduler/dodo.py")],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_holder(root, first)
        began = time.monotonic()
        listing = doit(root, "list", "--all")
        assert listing.returncode == 0 and "work:slow" in listing.stdout
        assert time.monotonic() - began < 0.9  # read-only: did not wait for the run

        refused = doit(root, env={TIMEOUT_ENV: "0"})
        assert refused.returncode == 3
        assert f"another affineur run holds this checkout (pid {first.pid})" in refused.stderr
        assert "Traceback" not in refused.stderr

        second = doit(root)
        assert second.returncode == 0, second.stderr
        assert second.stderr.count("waiting for another affineur run in this checkout") == 1
    finally:
        first.wait(timeout=30)
    assert first.returncode == 0
    assert [r[0] for r in runs(root)] == ["slow"]  # the second run found it up to date
