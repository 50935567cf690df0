"""One process that runs every hook of a build, seen from the run (see :mod:`._hook_server`).

Starting an interpreter and importing a backend costs more than a small build;
the session pays it once per build instead of once per hook, and gets each
answer over a pipe of its own.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import json
import os
import select
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from affineur.errors import AffineurError
from affineur.limits import TOO_DEEP, too_deep
from affineur.pep517._processes import (
    HookProcessFailed,
    HookTimedOut,
    forget,
    kill_group,
    reap_later,
    sandbox_failure,
    spawn,
    wait_for,
)
from affineur.pep517._sandbox import Confinement

__all__ = ["HookServer"]


@functools.cache
def _server_sources() -> tuple[str, str]:
    """The hook server's source, and pyproject-hooks' in-process script it runs hooks with."""
    package = importlib.resources.files("pyproject_hooks._in_process")
    in_process = package.joinpath("_in_process.py").read_text(encoding="utf-8")
    server = Path(__file__).with_name("_hook_server.py").read_text(encoding="utf-8")
    return server, in_process


class HookServer:
    """One process that runs every hook of a build (see :mod:`._hook_server`).

    Requests and answers travel over two pipes of their own, so the backend's
    output still goes to the log and a backend reading stdin reads nothing.
    """

    def __init__(
        self,
        python: str,
        *,
        cwd: Path,
        env: Mapping[str, str],
        log: Path,
        network: bool,
        confinement: Confinement | None,
    ) -> None:
        server, in_process = _server_sources()
        request_r, request_w = os.pipe()
        answer_r, answer_w = os.pipe()
        self._log = log
        self._confinement = confinement
        try:
            self.process, self._scratch = spawn(
                [python, "-c", server, str(request_r), str(answer_w)],
                cwd=cwd,
                env=env,
                log=log,
                network=network,
                confinement=confinement,
                pass_fds=(request_r, answer_w),
            )
        except BaseException:
            for fd in (request_r, request_w, answer_r, answer_w):
                os.close(fd)
            raise
        os.close(request_r)
        os.close(answer_w)
        self._requests: IO[str] = os.fdopen(request_w, "w", encoding="utf-8")
        self._answers = answer_r
        self._pending = b""
        self._send(json.dumps(in_process))

    def _send(self, line: str) -> None:
        try:
            self._requests.write(line + "\n")
            self._requests.flush()
        except BrokenPipeError:
            raise HookProcessFailed(self._exit_status()) from None

    def _exit_status(self) -> int:
        returncode = self.process.wait()
        sandbox_failure(returncode, self._confinement, self._log)
        # A process that answered nothing yet exited 0 still failed the hook.
        return returncode or 1

    def call(self, hook: str, kwargs: Mapping[str, Any], timeout: float | None) -> Any:
        """The answer to one hook call: the content of pyproject-hooks' output.json."""
        self._send(json.dumps({"hook": hook, "kwargs": kwargs}))
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while b"\n" not in self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    kill_group(self.process)
                    raise HookTimedOut
                ready, _, _ = select.select([self._answers], [], [], left)
                if not ready:
                    continue
                chunk = os.read(self._answers, 65536)
                if not chunk:
                    raise HookProcessFailed(self._exit_status())
                self._pending += chunk
                if len(self._pending) > _MAX_ANSWER:
                    raise _bad_answer(f"over {_MAX_ANSWER >> 20} MB")
            line, _, self._pending = self._pending.partition(b"\n")
            try:
                answer = json.loads(line)
                if too_deep(answer) or not isinstance(answer, dict):
                    raise ValueError(TOO_DEEP)
            except (ValueError, RecursionError):
                raise _bad_answer("not a hook's answer") from None
        except BaseException:
            if self.process.poll() is None:
                kill_group(self.process)
            raise
        return answer

    def close(self) -> None:
        """Let the process end (its request pipe closes), and make sure it did."""
        with contextlib.suppress(OSError):
            self._requests.close()
        try:
            # The unshare helper closes its end of the answer pipe only once nothing
            # of the build runs in the sandbox any more (see _sandbox_helper._reap);
            # the kernel's teardown of its namespaces, which can take longer than a
            # small build, is waited for aside.
            unshare = self._confinement is not None and self._confinement.kind == "unshare"
            if unshare and self._answers_end(timeout=10):
                reap_later(self.process, self._scratch)
                return
            try:
                wait_for(self.process, 10)
            except subprocess.TimeoutExpired:
                kill_group(self.process)
            forget(self.process, self._scratch)
        finally:
            os.close(self._answers)

    def _answers_end(self, timeout: float) -> bool:
        """Whether the answer pipe reached its end within ``timeout`` (what follows the
        last answer is discarded: nothing may come after it)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._answers], [], [], left)[0]:
                return False
            if not os.read(self._answers, 65536):
                return True


# A hook's answer is a file name or a list of requirements; the process runs the
# backend's code, which could write anything to the answer pipe.
_MAX_ANSWER = 16 << 20


def _bad_answer(what: str) -> AffineurError:
    return AffineurError(
        f"the hook process's answer is {what}: something in the build wrote to its answer pipe",
        stage="hook",
    )
