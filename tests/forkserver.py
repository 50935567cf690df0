"""A warm interpreter that forks a new process for each ``doit`` or ``affineur`` a test runs.

A test's ``doit`` is a new process, as a user's is; but a new interpreter spends
about 0.4 s of CPU importing doit and affineur before the command begins, and the
default run starts about a hundred of them. The server imports what every such
command imports anyway, once per pytest worker, then forks a child per command:
the child takes the command's folder, environment, arguments and output files and
runs ``python -m MODULE`` through runpy, as the interpreter would, then exits with
its status. Each command still gets a process of its own (its own signals, exit
code, file descriptors and module state), forked from an interpreter that has run
nothing but imports.

A command whose environment changes how an interpreter starts (``PYTHON*``
variables, the locale) or that is not ``-m doit`` or ``-m affineur.cli`` gets a
new interpreter as before (see :meth:`ForkServer.accepts`). ``AFFINEUR_TEST_FORK=0``
turns the server off.

Protocol, one JSON line each way per command: the client sends ``{"module", "args",
"cwd", "env", "stdout", "stderr"}``; the server answers ``{"pid"}`` once the child
runs, then ``{"status"}`` (a subprocess-style return code) when it has ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MODULES = ("doit", "affineur.cli")
"""What the server runs; it imports what they import on every run."""

_STARTUP = ("PYTHON", "LC_", "LANG")
"""Variables read when an interpreter starts: a command that changes one needs its own."""


class ForkServer:
    """The client side: one server process, started on first use."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self._proc: subprocess.Popen[str] | None = None
        self._output = Path(tempfile.mkdtemp(prefix="affineur-forkserver-"))
        self._lock = threading.Lock()
        self._pending = b""

    def accepts(self, argv: tuple[str, ...], env: Mapping[str, str]) -> bool:
        if len(argv) < 2 or argv[0] != "-m" or argv[1] not in MODULES:
            return False
        if os.environ.get("AFFINEUR_TEST_FORK", "1") == "0":
            return False
        names = {*env, *self.env}
        return all(
            env.get(name) == self.env.get(name) for name in names if name.startswith(_STARTUP)
        )

    def run(
        self, argv: tuple[str, ...], *, cwd: Path, env: Mapping[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        with self._lock:
            return self._run(argv, cwd=cwd, env=env, timeout=timeout)

    def _run(
        self, argv: tuple[str, ...], *, cwd: Path, env: Mapping[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        proc = self._server()
        assert proc.stdin is not None and proc.stdout is not None
        out, err = self._output / "stdout", self._output / "stderr"
        request = {
            "module": argv[1],
            "args": list(argv[2:]),
            "cwd": str(cwd),
            "env": dict(env),
            "stdout": str(out),
            "stderr": str(err),
        }
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        pid = int(self._answer(60)["pid"])
        try:
            status = int(self._answer(timeout)["status"])
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            self._answer(60)
            raise subprocess.TimeoutExpired([sys.executable, *argv], timeout) from None
        done = subprocess.CompletedProcess(
            [sys.executable, *argv],
            status,
            out.read_text(errors="replace"),
            err.read_text(errors="replace"),
        )
        out.unlink()
        err.unlink()
        return done

    def close(self) -> None:
        self._stop()
        shutil.rmtree(self._output, ignore_errors=True)

    def _stop(self) -> None:
        if self._proc is not None:
            # Closing its input ends the server; the context closes the pipes and waits.
            with self._proc:
                pass
            self._proc = None
            self._pending = b""

    def _server(self) -> subprocess.Popen[str]:
        if self._proc is not None and self._proc.poll() is not None:
            self._stop()  # it ended (a command killed it?): start another
        if self._proc is None:
            self._proc = subprocess.Popen(
                [sys.executable, __file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=self.env,
                text=True,
            )
        return self._proc

    def _answer(self, timeout: float) -> dict[str, Any]:
        """The server's next line. Read from the pipe itself, never through a buffer, so
        that select() waits only when no whole line has arrived yet."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError("the fork server ended")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer


# --- the server ---------------------------------------------------------------------------


def _child(request: dict[str, Any], base_path: list[str]) -> None:
    """Become ``python -m MODULE ARGS`` in the request's folder, environment and files."""
    import runpy
    import traceback

    code = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for fd, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # `python -m` puts the current folder first on the path.
        sys.path[:] = [str(Path.cwd()), *base_path]
        sys.argv = [request["module"], *request["args"]]
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        # What an interpreter does on its way out: join its threads, run atexit.
        import atexit
        import threading

        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            shutdown()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code & 0xFF)


def serve() -> None:
    # What `python -m doit` and `python -m affineur.cli` import before they do anything:
    # doit's command line, and affineur's (dodo.py imports affineur.run). doit names
    # itself after sys.argv[0] when imported, which `python -m` has set to "-m".
    sys.argv[:] = ["-m"]
    import doit.doit_cmd  # noqa: F401

    import affineur.cli
    import affineur.run  # noqa: F401

    base_path = sys.path[1:]  # without this script's folder
    requests, answers = sys.stdin, sys.stdout
    for line in requests:
        request = json.loads(line)
        answers.flush()
        pid = os.fork()
        if pid == 0:
            _child(request, base_path)
        answers.write(json.dumps({"pid": pid}) + "\n")
        answers.flush()
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve()
