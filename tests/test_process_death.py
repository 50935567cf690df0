"""Build processes end with the run: signals kill running hooks first, killed runs are swept.

SIGKILL of doit itself is tested end to end in test_build (the sandbox's parent-death
signal); here the signal handlers of a run and the sweep of what dead runs left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from affineur.build import sweep_dead_folders, sweep_stale_publishes
from affineur.pep517 import run_hook_process
from affineur.run._stopping import builds_end_with_the_run


def _dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.parametrize(
    ("signum", "raised"),
    [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SystemExit)],
)
def test_a_stop_signal_kills_the_running_hooks_before_the_run_unwinds(
    tmp_path: Path, signum: int, raised: type[BaseException]
) -> None:
    pidfile = tmp_path / "pid"
    # The hook starts a grandchild, as a compiler driver would; both must go.
    script = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    errors: list[BaseException] = []

    def hook() -> None:
        try:
            run_hook_process(
                [sys.executable, "-c", script],
                cwd=tmp_path,
                env=dict(os.environ),
                log=tmp_path / "hook.log",
                network=True,
                timeout=120,
            )
        except BaseException as exc:  # the killed hook fails: that is the point
            errors.append(exc)

    started = time.monotonic()
    with pytest.raises(raised), builds_end_with_the_run():
        worker = threading.Thread(target=hook)
        worker.start()
        while not pidfile.exists() or not pidfile.read_text():
            time.sleep(0.05)
        os.kill(os.getpid(), signum)
        time.sleep(30)  # the handler raises before this ends
    worker.join(10)
    assert not worker.is_alive()
    assert time.monotonic() - started < 30
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    assert errors, "the hook should have been killed"
    # Outside the run, the handlers are the ones from before.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sweeps_remove_only_what_dead_processes_left(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getppid()
    work = tmp_path / "work"
    for name in (f"{dead}.pkg-1.0-abc", f"{alive}.pkg-2.0-def", "legacy-1.0-xyz"):
        (work / name).mkdir(parents=True)
    removed = sweep_dead_folders(work)
    assert sorted(p.name for p in removed) == [f"{dead}.pkg-1.0-abc", "legacy-1.0-xyz"]
    assert [p.name for p in work.iterdir()] == [f"{alive}.pkg-2.0-def"]

    dist = tmp_path / "dist"
    for name in (f".cpu.{dead}.new", f".cpu.{dead}.old", f".cpu.{alive}.new", "cpu"):
        (dist / "demo" / name).mkdir(parents=True)
    removed = sweep_stale_publishes(dist)
    assert sorted(p.name for p in removed) == [f".cpu.{dead}.new", f".cpu.{dead}.old"]
    assert sorted(p.name for p in (dist / "demo").iterdir()) == [f".cpu.{alive}.new", "cpu"]
