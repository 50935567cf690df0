"""PEP 517 hook calls: which backend a source tree declares, and calling it.

pyproject-hooks does the protocol (the in-process script, JSON in and out); this
module adds what a build system needs around it: a runner that seals the hook
process (exact environment, network namespace, timeout, output in a log file),
and errors that say which stage failed and show the end of the log.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import json
import os
import re
import select
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
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
from affineur.pep517._isolation import isolate_command
from affineur.pep517._pyproject import BuildSystem

__all__ = [
    "BuildSystem",
    "HookCaller",
    "HookProcessFailed",
    "Runner",
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
    ) -> None: ...


def _spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    network: bool,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start a hook process: sealed, output appended to ``log``, in its own session.

    The one place hook processes start, whether they run one hook or a whole
    build's: isolation applies to both alike. Its own session lets a timeout kill
    everything the hook started (a compiler driver and its children), not only
    the Python at the top.
    """
    command = isolate_command(argv, network=network)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )


def _timed_out(timeout: float | None) -> AffineurError:
    return AffineurError(
        f"the build hook did not finish within {timeout:g} s and was killed",
        stage="timeout",
        hint="raise 'timeout' for this package in its override if the build is just slow",
    )


def run_hook_process(
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    network: bool,
    timeout: float | None,
) -> None:
    """Run ``cmd`` with exactly ``env``, output appended to ``log``."""
    process = _spawn(cmd, cwd=cwd, env=env, log=log, network=network)
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise _timed_out(timeout) from None
    except BaseException:
        # Interrupted (Ctrl-C in the parent): leave no orphaned build behind.
        _kill_group(process)
        raise
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
        self, python: str, *, cwd: Path, env: Mapping[str, str], log: Path, network: bool
    ) -> None:
        server, in_process = _server_sources()
        request_r, request_w = os.pipe()
        answer_r, answer_w = os.pipe()
        try:
            self.process = _spawn(
                [python, "-c", server, str(request_r), str(answer_w)],
                cwd=cwd,
                env=env,
                log=log,
                network=network,
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
                    raise _timed_out(timeout)
                ready, _, _ = select.select([self._answers], [], [], left)
                if not ready:
                    continue
                chunk = os.read(self._answers, 65536)
                if not chunk:
                    raise HookProcessFailed(self._exit_status())
                self._pending += chunk
        except BaseException:
            if self.process.poll() is None:
                _kill_group(self.process)
            raise
        line, _, self._pending = self._pending.partition(b"\n")
        return json.loads(line)

    def close(self) -> None:
        """Let the process end (its request pipe closes), and make sure it did."""
        with contextlib.suppress(OSError):
            self._requests.close()
        os.close(self._answers)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _kill_group(self.process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
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
    ) -> None:
        self.source_dir = source_dir
        self.build_system = build_system
        self.log = log
        self.network = network
        self.timeout = timeout
        self._runner: Runner = runner or run_hook_process
        self._env = dict(env)
        bin_dir = str(Path(python).parent)
        path = self._env.get("PATH", "")
        if path.split(os.pathsep)[0] != bin_dir:
            self._env["PATH"] = os.pathsep.join(p for p in (bin_dir, path) if p)
        self._python = python
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
        if self._in_session:
            self._run_in_server(cmd, cwd, env)
            return
        self._runner(
            cmd,
            cwd=Path(cwd) if cwd else self.source_dir,
            env=env,
            log=self.log,
            network=self.network,
            timeout=self.timeout,
        )

    def _run_in_server(self, cmd: Sequence[str], cwd: str | None, env: Mapping[str, str]) -> None:
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
            )
        kwargs = json.loads((control / "input.json").read_text(encoding="utf-8"))["kwargs"]
        try:
            answer = self._server.call(hook, kwargs, self.timeout)
        except BaseException:
            # A failed or killed hook ends the process: the next hook starts a new one.
            self._server.close()
            self._server = None
            raise
        (control / "output.json").write_text(json.dumps(answer), encoding="utf-8")

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
