"""PEP 517 hook calls: which backend a source tree declares, and calling it.

pyproject-hooks does the protocol (the in-process script, JSON in and out); this
module adds what a build system needs around it: a runner that seals the hook
process (exact environment, network namespace, timeout, output in a log file),
and errors that say which stage failed and show the end of the log.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.resources
import json
import os
import re
import select
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from pyproject_hooks import (
    BackendUnavailable,
    BuildBackendHookCaller,
    BuildBackendWarning,
    HookMissing,
)

from affineur.errors import AffineurError, Stage
from affineur.limits import TOO_DEEP, too_deep
from affineur.pep517._isolation import isolate_command
from affineur.pep517._pyproject import BuildSystem
from affineur.pep517._sandbox import SANDBOX_FAILED, Confinement, sandbox_command
from affineur.pep517._tools import ToolStates, host_tool_states

__all__ = [
    "BuildSystem",
    "HookCaller",
    "HookProcessFailed",
    "HookTimedOut",
    "Runner",
    "kill_running_hooks",
    "run_hook_process",
]

# How much of the log a failure carries: enough for a compiler error and the
# traceback that follows it, short enough for a terminal and a JSON report.
LOG_TAIL_LINES = 30

# pyproject-hooks re-emits the backend's warnings in *this* process with
# warnings.warn_explicit, which would print them on our terminal, out of the
# package's log. warnings.catch_warnings is process-global and not thread-safe
# (builds run in threads), so instead each thread names the log it is hooking for
# and one display function sends backend warnings there.
_hook_log = threading.local()
_show_other_warning = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    log: Path | None = getattr(_hook_log, "path", None)
    if log is None or not issubclass(category, BuildBackendWarning):
        _show_other_warning(message, category, filename, lineno, file, line)
        return
    with log.open("a") as out:
        out.write(warnings.formatwarning(message, category, filename, lineno, line))


def _route_backend_warnings() -> None:
    if warnings.showwarning is not _show_warning:
        warnings.showwarning = _show_warning
    warnings.filterwarnings("always", category=BuildBackendWarning)


# --- running hook processes ---------------------------------------------------


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


def _spawn(
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
    scratch folder (for :func:`_forget`).

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


def _forget(process: subprocess.Popen[bytes], scratch: Path | None) -> None:
    with _running_lock:
        _running.discard(process)
    _remove_scratch(scratch)


def _wait(process: subprocess.Popen[bytes], timeout: float | None) -> int:
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


# The threads waiting for sandboxes whose builds are over (see _HookServer.close).
_reapers: list[threading.Thread] = []


def _reap_later(process: subprocess.Popen[bytes], scratch: Path | None) -> None:
    """Collect ``process`` (and remove its scratch folder) once it ends, in a thread.

    It stays among the running hooks until then, so a run told to stop kills it.
    """

    def reap() -> None:
        try:
            _wait(process, 60)
        except subprocess.TimeoutExpired:
            _kill_group(process)
        finally:
            _forget(process, scratch)

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


def _sandbox_failure(returncode: int, confinement: Confinement | None, log: Path) -> None:
    if returncode == SANDBOX_FAILED and confinement is not None:
        raise AffineurError(
            f"the {confinement.kind} sandbox could not start the hook",
            stage="isolation",
            causes=_log_tail(log, 0)[-3:],
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
    process, scratch = _spawn(
        cmd, cwd=cwd, env=env, log=log, network=network, confinement=confinement
    )
    try:
        returncode = _wait(process, timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise HookTimedOut from None
    except BaseException:
        # Interrupted (Ctrl-C in the parent): leave no orphaned build behind.
        _kill_group(process)
        raise
    finally:
        _forget(process, scratch)
    _sandbox_failure(returncode, confinement, log)
    if returncode != 0:
        raise HookProcessFailed(returncode)


@functools.cache
def _server_sources() -> tuple[str, str]:
    """The hook server's source, and pyproject-hooks' in-process script it runs hooks with."""
    package = importlib.resources.files("pyproject_hooks._in_process")
    in_process = package.joinpath("_in_process.py").read_text(encoding="utf-8")
    server = Path(__file__).with_name("_hook_server.py").read_text(encoding="utf-8")
    return server, in_process


class _HookServer:
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
            self.process, self._scratch = _spawn(
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
        _sandbox_failure(returncode, self._confinement, self._log)
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
                    _kill_group(self.process)
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
                _kill_group(self.process)
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
                _reap_later(self.process, self._scratch)
                return
            try:
                _wait(self.process, 10)
            except subprocess.TimeoutExpired:
                _kill_group(self.process)
            _forget(self.process, self._scratch)
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


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _log_tail(log: Path, offset: int) -> tuple[str, ...]:
    """The last lines written to ``log`` since ``offset``."""
    try:
        with log.open("rb") as stream:
            stream.seek(offset)
            text = stream.read().decode("utf-8", errors="replace")
    except OSError:
        return ()
    return tuple(text.splitlines()[-LOG_TAIL_LINES:])


_MISSING_MODULE = re.compile(r"No module named '([^']+)'")


class HookCaller:
    """Calls the PEP 517 hooks of one source tree in a sealed subprocess.

    ``env`` is the complete environment of the hook process (see
    :func:`affineur.pep517._isolation.build_environment_variables`); nothing of this
    process's environment is added to it, except the interpreter's directory
    first on PATH so the build environment's own scripts (cython, meson, ninja)
    are the ones a backend finds.
    """

    def __init__(
        self,
        source_dir: Path,
        build_system: BuildSystem,
        *,
        python: str,
        env: Mapping[str, str],
        log: Path,
        network: bool,
        timeout: float | None,
        runner: Runner | None = None,
        confinement: Confinement | None = None,
    ) -> None:
        """``timeout`` is the budget of all hook calls made through this caller together
        (a build's get_requires and build_wheel share one)."""
        self.source_dir = source_dir
        self.build_system = build_system
        self.log = log
        self.network = network
        self.timeout = timeout
        self.confinement = confinement
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._runner: Runner = runner or run_hook_process
        self._env = dict(env)
        bin_dir = str(Path(python).parent)
        path = self._env.get("PATH", "")
        if path.split(os.pathsep)[0] != bin_dir:
            self._env["PATH"] = os.pathsep.join(p for p in (bin_dir, path) if p)
        self._python = python
        self._lookups: dict[str, str | None] = {}
        self._in_session = False
        self._server: _HookServer | None = None
        self._hooks = BuildBackendHookCaller(
            str(source_dir),
            build_system.build_backend,
            backend_path=list(build_system.backend_path) or None,
            runner=self._run,
            python_executable=python,
        )

    @contextlib.contextmanager
    def session(self) -> Iterator[HookCaller]:
        """Hooks called inside the block share one process, started at the first.

        A build calls two or three hooks, and each new process pays for an
        interpreter start and the backend's import (a quarter of a second for
        setuptools) again. An injected runner keeps seeing one command per hook.
        """
        self._in_session = self._runner is run_hook_process
        try:
            yield self
        finally:
            self._in_session = False
            if self._server is not None:
                self._server.close()
                self._server = None

    def _run(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None:
        # pyproject-hooks tells the in-process script which backend to load
        # through extra_environ; without it no hook can run.
        env = {**self._env, **(extra_environ or {})}
        remaining = None
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise HookTimedOut
        if self._in_session:
            self._run_in_server(cmd, cwd, env, remaining)
            return
        confinement = self.confinement
        if confinement is not None and len(cmd) == 4:
            # [python, the in-process script, hook name, control dir]: the script
            # is read, the control dir holds the hook's input and output.
            confinement = confinement.adding(writable=[Path(cmd[3])], read_only=[Path(cmd[1])])
        self._runner(
            cmd,
            cwd=Path(cwd) if cwd else self.source_dir,
            env=env,
            log=self.log,
            network=self.network,
            timeout=remaining,
            confinement=confinement,
        )

    def _run_in_server(
        self, cmd: Sequence[str], cwd: str | None, env: Mapping[str, str], timeout: float | None
    ) -> None:
        # pyproject-hooks ran ``python _in_process.py <hook> <control dir>``: the
        # server takes the same input and leaves the same output in that directory.
        hook, control = cmd[-2], Path(cmd[-1])
        if self._server is None:
            self._server = _HookServer(
                self._python,
                cwd=Path(cwd) if cwd else self.source_dir,
                env=env,
                log=self.log,
                network=self.network,
                confinement=self.confinement,
            )
        kwargs = json.loads((control / "input.json").read_text(encoding="utf-8"))["kwargs"]
        try:
            answer = self._server.call(hook, kwargs, timeout)
        except BaseException:
            # A failed or killed hook ends the process: the next hook starts a new one.
            self._server.close()
            self._server = None
            raise
        for program, found in answer.pop("which", None) or ():
            if isinstance(program, str) and (found is None or isinstance(found, str)):
                self._lookups.setdefault(program, found)
        (control / "output.json").write_text(json.dumps(answer), encoding="utf-8")

    def host_tools(self) -> ToolStates:
        """The host build tools the ``get_requires`` hooks looked for, and what each was.

        Recorded only inside :meth:`session` (the hook server sees the lookups);
        what the build environment itself provided is left out.
        """
        return host_tool_states(self._lookups, Path(self._python).parent.parent)

    def _call(self, hook: str, stage: Stage, kwargs: Mapping[str, Any]) -> Any:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with self.log.open("ab") as out:
            out.write(
                f"=== {stamp} {hook} ({self.build_system.build_backend}) "
                f"in {self.source_dir}\n".encode()
            )
            offset = out.tell()
        _route_backend_warnings()
        _hook_log.path = self.log
        try:
            return getattr(self._hooks, hook)(**kwargs)
        except HookTimedOut:
            assert self.timeout is not None
            raise AffineurError(
                f"the build hooks did not finish within {self.timeout:g} s and were killed "
                f"(in {hook})",
                stage="timeout",
                causes=_log_tail(self.log, offset),
                hint="raise 'timeout' for this package in its override if the build is just slow",
            ) from None
        except AffineurError as exc:
            # A timeout from the runner: what the hook printed last shows where it hung.
            if not exc.causes:
                exc.causes = _log_tail(self.log, offset)
            raise
        except HookProcessFailed as exc:
            raise AffineurError(
                f"the {hook} hook of {self.build_system.build_backend} failed ({exc})",
                stage=stage,
                causes=_log_tail(self.log, offset),
                hint=f"the full output is in {self.log}",
            ) from None
        except BackendUnavailable as exc:
            missing = _MISSING_MODULE.findall(exc.traceback) or _MISSING_MODULE.findall(str(exc))
            if missing:
                hint = (
                    f"the build environment has no module {missing[-1]!r}: add the project "
                    "that provides it to the build requirements (an override of "
                    "build-system requires), then re-lock"
                )
            else:
                hint = "check [build-system] build-backend and backend-path in pyproject.toml"
            raise AffineurError(
                f"cannot import the build backend {self.build_system.build_backend!r}",
                stage="build-env",
                hint=hint,
                causes=tuple(exc.traceback.splitlines()[-LOG_TAIL_LINES:]),
            ) from None
        finally:
            _hook_log.path = None

    def _requirements(self, hook: str, config_settings: Mapping[str, Any] | None) -> list[str]:
        value = self._call(hook, "hook", {"config_settings": config_settings})
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise AffineurError(
                f"the {hook} hook returned {value!r}, not a list of requirement strings",
                stage="hook",
            )
        for item in value:
            try:
                Requirement(item)
            except InvalidRequirement as exc:
                raise AffineurError(
                    f"the {hook} hook returned an invalid requirement {item!r}: {exc}",
                    stage="hook",
                ) from exc
        return value

    def get_requires_for_build_wheel(
        self, config_settings: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Extra build requirements for a wheel (``[]`` when the backend has no such hook)."""
        return self._requirements("get_requires_for_build_wheel", config_settings)

    def get_requires_for_build_sdist(
        self, config_settings: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Extra build requirements for an sdist (``[]`` when the backend has no such hook)."""
        return self._requirements("get_requires_for_build_sdist", config_settings)

    def prepare_metadata_for_build_wheel(
        self, outdir: Path, config_settings: Mapping[str, Any] | None = None
    ) -> Path | None:
        """The ``.dist-info`` directory the backend wrote into ``outdir``.

        None when the backend has no such hook: the fallback (building the whole
        wheel to read its metadata) is the caller's decision, not a hidden cost.
        """
        outdir.mkdir(parents=True, exist_ok=True)
        try:
            name = self._call(
                "prepare_metadata_for_build_wheel",
                "hook",
                {
                    "metadata_directory": str(outdir),
                    "config_settings": config_settings,
                    "_allow_fallback": False,
                },
            )
        except HookMissing:
            return None
        return self._output(outdir, name, "prepare_metadata_for_build_wheel", "hook")

    def build_wheel(self, outdir: Path, config_settings: Mapping[str, Any] | None = None) -> Path:
        """Build a wheel into ``outdir`` and return its path."""
        outdir.mkdir(parents=True, exist_ok=True)
        name = self._call(
            "build_wheel",
            "build",
            {"wheel_directory": str(outdir), "config_settings": config_settings},
        )
        return self._output(outdir, name, "build_wheel", "build")

    def _output(self, outdir: Path, name: object, hook: str, stage: Stage) -> Path:
        # The hook returns a basename; anything else would let a backend point
        # us at a file outside the directory we gave it.
        if not isinstance(name, str) or not name or Path(name).name != name:
            raise AffineurError(f"the {hook} hook returned {name!r}, not a name", stage=stage)
        path = outdir / name
        if not path.exists():
            raise AffineurError(
                f"the {hook} hook returned {name!r}, which it did not create in {outdir}",
                stage=stage,
            )
        return path
