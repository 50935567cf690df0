"""One run per checkout: a second one waits, or stops when told not to wait."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
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
import sys
from pathlib import Path
from affineur.run._mutex import hold_checkout
with hold_checkout(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()
"""


@contextmanager
def holder(root: Path) -> Iterator[subprocess.Popen[str]]:
    """A process holding the checkout lock until a line arrives on its stdin (or it is killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline() == "held\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("done\n")
    proc.stdin.flush()


class ReleasingStream(io.StringIO):
    """Lets the holder go as soon as the waiter says it waits: the wait is then certain."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        super().__init__()
        self.proc = proc

    def write(self, text: str) -> int:
        written = super().write(text)
        release(self.proc)
        return written


def test_no_wait_names_the_holder(tmp_path: Path) -> None:
    with (
        holder(tmp_path) as proc,
        pytest.raises(AffineurError) as info,
        hold_checkout(tmp_path, timeout=0),
    ):
        pass
    assert f"(pid {proc.pid})" in info.value.message


def test_a_second_run_waits_once_then_gets_the_lock(tmp_path: Path) -> None:
    with holder(tmp_path) as proc:
        out = ReleasingStream(proc)
        with hold_checkout(tmp_path, stream=out):
            # The holder let go only after we said we wait, so we did wait for it.
            assert proc.wait(timeout=30) == 0
            assert mutex_path(tmp_path).read_text() == f"{os.getpid()}\n"
    assert (
        out.getvalue() == f"waiting for another affineur run in this checkout (pid {proc.pid})…\n"
    )


def test_a_timeout_gives_up(tmp_path: Path) -> None:
    with (
        holder(tmp_path),
        pytest.raises(AffineurError, match="holds this checkout"),
        hold_checkout(tmp_path, timeout=0.3, stream=io.StringIO()),
    ):
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    with holder(tmp_path):
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
    # Generous: only a run that never takes the lock waits this long.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if mutex_path(root).exists() and mutex_path(root).read_text().strip():
            return
        time.sleep(0.02)
    raise AssertionError("the first run never took the lock")


def test_two_doit_runs_in_one_checkout(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    # The first run's only task lasts until the test removes `hold`: every check
    # below happens while that run holds the checkout, however loaded the machine.
    root = checkout(tmp_path / "co", {"cpu": 1}, [{"name": "slow", "hold": str(hold)}])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "SCHEDULER_SPEC": str(root / "spec.json")}
    doit_cmd = [sys.executable, "-m", "doit", "-f", str(REPO / "tests/data/scheduler/dodo.py")]
    first = subprocess.Popen(
        doit_cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    second: subprocess.Popen[str] | None = None
    try:
        wait_for_holder(root, first)
        # Read-only: `doit list` does not take the lock, so it needs no wait at all.
        listing = doit(root, "list", "--all", env={TIMEOUT_ENV: "0"})
        assert listing.returncode == 0, listing.stderr
        assert "work:slow" in listing.stdout and "waiting" not in listing.stderr

        refused = doit(root, env={TIMEOUT_ENV: "0"})
        assert refused.returncode == 3
        assert f"another affineur run holds this checkout (pid {first.pid})" in refused.stderr
        assert "Traceback" not in refused.stderr

        second = subprocess.Popen(
            doit_cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert second.stderr is not None
        # Should the second run wait without a word, let the first go after a while
        # rather than hang: the check on what it said then fails.
        safety = threading.Timer(120, hold.unlink, kwargs={"missing_ok": True})
        safety.start()
        try:
            said = second.stderr.readline()
        finally:
            safety.cancel()
        assert "waiting for another affineur run in this checkout" in said, said
        hold.unlink()  # the first run may finish now; the second then runs
        _, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert (said + err).count("waiting for another affineur run in this checkout") == 1
    finally:
        hold.unlink(missing_ok=True)
        if second is not None and second.poll() is None:
            second.kill()
            second.communicate()
        first.wait(timeout=120)
    assert first.returncode == 0
    assert [r[0] for r in runs(root)] == ["slow"]  # the second run found it up to date
