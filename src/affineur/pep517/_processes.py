"""Hook processes: started sealed, waited for, and killed with all they started.

The one place a hook process starts and ends, whether it runs one hook
(:func:`run_hook_process`) or every hook of a build (:mod:`._session`): isolation,
the sandbox, its own session, its output in the package's log, and a registry
of what runs, so that a run told to stop kills it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from affineur.errors import AffineurError
from affineur.pep517._isolation import isolate_command
from affineur.pep517._sandbox import SANDBOX_FAILED, Confinement, sandbox_command

__all__ = [
    "LOG_TAIL_LINES",
    "HookProcessFailed",
    "HookTimedOut",
    "Runner",
    "forget",
    "kill_group",
    "kill_running_hooks",
    "log_tail",
    "reap_later",
    "run_hook_process",
    "sandbox_failure",
    "spawn",
    "wait_for",
    "wait_for_reapers",
]

# How much of the log a failure carries: enough for a compiler error and the
# traceback that follows it, short enough for a terminal and a JSON report.
LOG_TAIL_LINES = 30


class HookProcessFailed(Exception):
    """The hook process exited with a non-zero status."""

    def __init__(self, returncode: int) -> None:
        super().__init__(f"exit status {returncode}")
        self.returncode = returncode


class Runner(Protocol):
    """Runs one hook process; raises :class:`HookProcessFailed` when it fails.

    It gets everything that decides what the process can see, so a test (or
    another sandbox) can stand in for the default :func:`run_hook_process`.
    ``timeout`` is what is left of the hook caller's budget, ``confinement`` the
    filesystem sandbox (None: none at all, only the network namespace).
    """

    def __call__(
        self,
        cmd: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log: Path,
        network: bool,
        timeout: float | None,
        confinement: Confinement | None = None,
    ) -> None: ...


class HookTimedOut(Exception):
    """The hook process outlived its time and was killed (with all it started)."""


# Every hook process now running, so that a run that is told to stop (SIGTERM,
# SIGINT, SIGHUP) kills them before it goes: doit's worker threads would
# otherwise wait for builds that nobody will collect.
_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()


def kill_running_hooks() -> int:
    """Kill every running hook process and what it started; returns how many there were."""
    with _running_lock:
        processes = list(_running)
    for process in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    return len(processes)


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    network: bool,
    confinement: Confinement | None,
    pass_fds: Sequence[int] = (),
) -> tuple[subprocess.Popen[bytes], Path | None]:
    """Start a hook process: sealed, inside ``confinement``, output appended to ``log``,
    in its own session, counted among the running hooks; returns it and its sandbox's
    scratch folder (for :func:`forget`).

    The one place hook processes start, whether they run one hook or a whole
    build's: isolation and the sandbox apply to both alike. Its own session lets a
    timeout kill everything the hook started (a compiler driver and its children),
    not only the Python at the top; the sandboxes also make it die with this
    process, however this process ends.
    """
    scratch: Path | None = None
    if confinement is None or confinement.kind == "none":
        command = isolate_command(argv, network=network)
    else:
        scratch = Path(tempfile.mkdtemp(prefix="affineur-sandbox-"))
        command = sandbox_command(
            argv, cwd=cwd, confinement=replace(confinement, network=network), scratch=scratch
        )
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=tuple(pass_fds),
            )
    except BaseException:
        _remove_scratch(scratch)
        raise
    with _running_lock:
        _running.add(process)
    return process, scratch


def _remove_scratch(scratch: Path | None) -> None:
    if scratch is not None:
        with contextlib.suppress(OSError):
            scratch.rmdir()


def forget(process: subprocess.Popen[bytes], scratch: Path | None) -> None:
    with _running_lock:
        _running.discard(process)
    _remove_scratch(scratch)


def wait_for(process: subprocess.Popen[bytes], timeout: float | None) -> int:
    """``process.wait(timeout)``, woken the moment the process ends.

    Popen.wait with a timeout polls, sleeping up to 50 ms between looks: every
    hook process would end up to 50 ms after it did. A pidfd is readable when its
    process ends (Linux 5.3 and later); elsewhere Popen's polling remains.
    """
    if timeout is None or process.returncode is not None:
        return process.wait(timeout)
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        return process.wait(timeout)
    try:
        deadline = time.monotonic() + timeout
        while not select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(process.args, timeout)
    finally:
        os.close(pidfd)
    return process.wait()


# The threads waiting for sandboxes whose builds are over (see HookServer.close).
_reapers: list[threading.Thread] = []


def reap_later(process: subprocess.Popen[bytes], scratch: Path | None) -> None:
    """Collect ``process`` (and remove its scratch folder) once it ends, in a thread.

    It stays among the running hooks until then, so a run told to stop kills it.
    """

    def reap() -> None:
        try:
            wait_for(process, 60)
        except subprocess.TimeoutExpired:
            kill_group(process)
        finally:
            forget(process, scratch)

    thread = threading.Thread(target=reap, name="affineur-reaper", daemon=True)
    thread.start()
    with _running_lock:
        _reapers[:] = [t for t in _reapers if t.is_alive()]
        _reapers.append(thread)


@atexit.register
def wait_for_reapers(timeout: float = 30.0) -> None:
    """Wait until every sandbox left to end in the background has ended.

    At exit too: its processes are this run's, and so is their CPU time.
    """
    deadline = time.monotonic() + timeout
    with _running_lock:
        threads = list(_reapers)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def sandbox_failure(returncode: int, confinement: Confinement | None, log: Path) -> None:
    if returncode == SANDBOX_FAILED and confinement is not None:
        raise AffineurError(
            f"the {confinement.kind} sandbox could not start the hook",
            stage="isolation",
            causes=log_tail(log, 0)[-3:],
            hint="'affineur check' says which sandbox works here",
        )


def run_hook_process(
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    network: bool,
    timeout: float | None,
    confinement: Confinement | None = None,
) -> None:
    """Run ``cmd`` with exactly ``env``, output appended to ``log``, inside ``confinement``."""
    process, scratch = spawn(
        cmd, cwd=cwd, env=env, log=log, network=network, confinement=confinement
    )
    try:
        returncode = wait_for(process, timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        raise HookTimedOut from None
    except BaseException:
        # Interrupted (Ctrl-C in the parent): leave no orphaned build behind.
        kill_group(process)
        raise
    finally:
        forget(process, scratch)
    sandbox_failure(returncode, confinement, log)
    if returncode != 0:
        raise HookProcessFailed(returncode)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def log_tail(log: Path, offset: int) -> tuple[str, ...]:
    """The last lines written to ``log`` since ``offset``."""
    try:
        with log.open("rb") as stream:
            stream.seek(offset)
            text = stream.read().decode("utf-8", errors="replace")
    except OSError:
        return ()
    return tuple(text.splitlines()[-LOG_TAIL_LINES:])
