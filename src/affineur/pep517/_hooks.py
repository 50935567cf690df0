"""PEP 517 hook calls: which backend a source tree declares, and calling it.

pyproject-hooks does the protocol (the in-process script, JSON in and out); this
module adds what a build system needs around it: hook processes sealed by
:mod:`._processes` (exact environment, sandbox, timeout, output in a log file),
one process per build through :mod:`._session`, and errors that say which stage
failed and show the end of the log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from pyproject_hooks import (
    BackendUnavailable,
    BuildBackendHookCaller,
    BuildBackendWarning,
    HookMissing,
)

from affineur.errors import AffineurError, Stage
from affineur.pep517._processes import (
    LOG_TAIL_LINES,
    HookProcessFailed,
    HookTimedOut,
    Runner,
    log_tail,
    run_hook_process,
)
from affineur.pep517._pyproject import BuildSystem
from affineur.pep517._sandbox import Confinement
from affineur.pep517._session import HookServer
from affineur.pep517._tools import ToolStates, host_tool_states

__all__ = ["BuildSystem", "HookCaller"]

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
        self._server: HookServer | None = None
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
            self._server = HookServer(
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
                causes=log_tail(self.log, offset),
                hint="raise 'timeout' for this package in its override if the build is just slow",
            ) from None
        except AffineurError as exc:
            # A timeout from the runner: what the hook printed last shows where it hung.
            if not exc.causes:
                exc.causes = log_tail(self.log, offset)
            raise
        except HookProcessFailed as exc:
            raise AffineurError(
                f"the {hook} hook of {self.build_system.build_backend} failed ({exc})",
                stage=stage,
                causes=log_tail(self.log, offset),
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
