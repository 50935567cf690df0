"""Build-requirement discovery: what each sdist needs in order to be built.

For one sdist: ``[build-system]`` from its pyproject.toml, then the
``get_requires_for_build_wheel`` and ``get_requires_for_build_sdist`` hooks run in
an environment holding the build-system requirements. Discovery is stage 1: it
runs untrusted code with network access, and in the default ``wheels`` mode it
installs upstream wheels to do so, which makes locking fast and needs no compiler.
Its results are data only (requirement strings), cached by sdist hash and
environment so a re-lock does not run a hook twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName
from packaging.version import Version

from affineur.atomic import write_atomic
from affineur.config import SandboxSetting, Settings, source_env
from affineur.errors import AffineurError
from affineur.pep517 import (
    SOURCE_DATE_EPOCH_FLOOR,
    BuildEnvironment,
    BuildSystem,
    EnvironmentStore,
    HookCaller,
    Interpreter,
    ToolStates,
    changed_tools,
    confine,
    effective_build_system,
    hook_environment,
    read_build_system,
    running_interpreter,
    rust_build,
    safe_extract,
    unpack_limits,
)

__all__ = ["BuildRequirements", "Discoverer", "Pins", "ResolveFn", "WheelFn"]

Pins = Mapping[NormalizedName, Version]
# Resolves requirement strings into one version per project (the build environment).
ResolveFn = Callable[[Sequence[str]], Pins]
# Supplies a wheel of name==version to install into a discovery environment.
WheelFn = Callable[[NormalizedName, Version], Path]

CACHE_FORMAT = 2


@dataclass(frozen=True)
class BuildRequirements:
    """The three kinds of build requirement, kept apart because the lock types its edges."""

    build_backend_name: str
    build_system: tuple[str, ...]
    build_backend: tuple[str, ...]
    build_sdist: tuple[str, ...]
    host_tools: ToolStates = ()
    """The host build tools the hooks looked for, and what each was (see pep517's _tools)."""

    def all(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.build_system, *self.build_backend, *self.build_sdist)))


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _read_hook_answers(path: Path) -> dict[str, Any] | None:
    """A cached discovery answer, or None when there is none or it is damaged (a
    damaged cache costs running the hooks again, never a failed lock)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError):
        return None
    if not (
        isinstance(data, dict)
        and all(
            isinstance(data.get(k), list) and all(isinstance(r, str) for r in data[k])
            for k in ("wheel", "sdist")
        )
        and all(
            isinstance(t, list)
            and len(t) == 2
            and isinstance(t[0], str)
            and (t[1] is None or isinstance(t[1], str))
            for t in data.get("host_tools", [])
        )
    ):
        return None
    return data


class _KeyedLocks:
    """One lock per key: threads doing the same work wait for each other, others don't.

    Re-entrant: in ``discovery: source`` a package's discovery builds the wheels
    of its environment, whose discovery may come back to it (a cycle, which the
    locker reports); the thread that holds a key must not wait for itself.
    """

    def __init__(self) -> None:
        self._locks: dict[object, threading.RLock] = {}
        self._guard = threading.Lock()

    def __call__(self, key: object) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(key, threading.RLock())


class Discoverer:
    """Runs discovery hooks in cached, isolated environments under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        logs: Path,
        base_env: Mapping[str, str] | None = None,
        timeout: float | None = 1800,
        sandbox: SandboxSetting | None = None,
        network: bool = False,
        hidden: Sequence[Path] = (),
        interpreter: Interpreter | None = None,
        files: Path | None = None,
    ) -> None:
        """Hooks run in the variant's ``sandbox`` (bubblewrap or unshare by default),
        without the network unless ``network``; ``hidden`` (the checkout, the build
        folder) stays out of their sight. Their environments are made from
        ``interpreter`` (default: the running one); ``files`` is where their files
        and bytecode are kept by content (the builds' store shares it)."""
        self.workdir = workdir
        self.logs = logs
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.timeout = timeout
        self.sandbox = sandbox or SandboxSetting()
        self.network = network
        self.hidden = (*hidden, workdir)
        self.interpreter = interpreter or running_interpreter()
        self.environments = EnvironmentStore(
            workdir, python=self.interpreter.executable, files=files
        )
        # Discovery may run in several threads (the locker looks ahead): the same
        # sdist is unpacked, and the same hooks run, once; a second asker waits.
        self._busy = _KeyedLocks()

    # --- sources ------------------------------------------------------------

    def source_tree(self, sdist: Path, sha256: str, settings: Settings) -> Path:
        """The unpacked sdist (kept per hash: unpacking is cheap but not free)."""
        root = self.workdir / "src" / sha256[:32]
        with self._busy(("src", sha256)):
            if not root.is_dir():
                root.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
                    safe_extract(sdist, Path(tmp), unpack_limits(settings)).rename(root)
        return root / settings.build_dir if settings.build_dir else root

    # --- environments -------------------------------------------------------

    def environment(self, pins: Pins, wheels: WheelFn) -> BuildEnvironment:
        """A venv holding exactly ``pins``; reused across packages that need the same set."""
        return self.environments.environment([wheels(n, v) for n, v in sorted(pins.items())])

    # --- hooks --------------------------------------------------------------

    @contextlib.contextmanager
    def _caller(
        self,
        source: Path,
        build_system: BuildSystem,
        env: BuildEnvironment,
        settings: Settings,
        name: str,
        version: Version,
        outdir: Path | None = None,
    ) -> Iterator[HookCaller]:
        """A hook caller with a fresh home of its own, removed afterwards: one sdist's
        hooks must not leave anything behind for another's."""
        log = self.logs / f"{name}-{version}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        (self.workdir / "calls").mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}.", dir=self.workdir / "calls"))
        try:
            home = scratch / "home"
            home.mkdir()
            yield self._make_caller(
                source, build_system, env, settings, name, version, log, home, outdir
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _make_caller(
        self,
        source: Path,
        build_system: BuildSystem,
        env: BuildEnvironment,
        settings: Settings,
        name: str,
        version: Version,
        log: Path,
        home: Path,
        outdir: Path | None,
    ) -> HookCaller:
        tree = self.workdir / "src"
        root = next((p for p in (source, *source.parents) if p.parent == tree), source)
        variables = hook_environment(
            base=self.base_env,
            package_env={**source_env(settings, name, str(version)), **settings.env},
            name=name,
            version=str(version),
            source_date_epoch=int(
                self.base_env.get("SOURCE_DATE_EPOCH", str(SOURCE_DATE_EPOCH_FLOOR))
            ),
            home=home,
            tmpdir=home.parent,
            pass_env=settings.pass_env,
        )
        # A Rust backend's hooks look for cargo (maturin asks for a Rust installer when it
        # finds none): they see the toolchain the build will use, offline.
        rust = rust_build(
            name, source, home.parent, vendored=None, crates=None,
            path=variables.get("PATH", ""), required=False,
        )  # fmt: skip
        if rust is not None:
            variables.update(rust.env)
        confinement = confine(
            self.sandbox,
            writable=[root, home.parent, *([outdir] if outdir else [])],
            read_only=[
                env.path,
                *(Path(p) for p in self.interpreter.prefixes),
                *(rust.read_only if rust else ()),
            ],
            hidden=self.hidden,
        )
        return HookCaller(
            source,
            build_system,
            python=str(env.python),
            env=variables,
            log=log,
            network=self.network,
            timeout=settings.timeout or self.timeout,
            confinement=confinement,
        )

    def requirements(
        self,
        name: NormalizedName,
        version: Version,
        sdist: Path,
        sha256: str,
        settings: Settings,
        resolve: ResolveFn,
        wheels: WheelFn,
    ) -> BuildRequirements:
        """Discover the build requirements of one sdist (cached by hash and environment)."""
        source = self.source_tree(sdist, sha256, settings)
        try:
            build_system = effective_build_system(source, settings.build_requires)
        except AffineurError as exc:
            # Its file is in an unpacked tree named by hash: say whose it is.
            raise dataclasses.replace(
                exc, package=exc.package or name, version=exc.version or str(version)
            ) from None
        pins = resolve(build_system.requires)
        cache_key = _digest(
            {
                "format": CACHE_FORMAT,
                # A hook may answer by the Python running it (a build requirement
                # under a python_version condition in setup.py): one answer per Python.
                "python": self.interpreter.key(),
                "sdist": sha256,
                "build_dir": settings.build_dir,
                "build_system": [
                    build_system.requires,
                    build_system.build_backend,
                    build_system.backend_path,
                ],
                "pins": sorted(f"{n}=={v}" for n, v in pins.items()),
                "config_settings": dict(settings.config_settings),
                "env": dict(settings.env),
            }
        )
        cached = self.workdir / "hooks" / f"{cache_key}.json"
        with self._busy(("hooks", cache_key)):
            data = _read_hook_answers(cached)
            tools: ToolStates = ()
            if data is not None:
                tools = tuple((str(p), s) for p, s in data.get("host_tools", ()))
            if data is not None and not changed_tools(tools, self.base_env.get("PATH")):
                wheel_reqs, sdist_reqs = tuple(data["wheel"]), tuple(data["sdist"])
            else:
                # Not yet asked, or asked on a host whose tools differed: the answer
                # may differ here (a tool installed since, or removed).
                env = self.environment(pins, wheels)
                with (
                    self._caller(source, build_system, env, settings, name, version) as caller,
                    caller.session(),
                ):
                    config = dict(settings.config_settings) or None
                    wheel_reqs = tuple(caller.get_requires_for_build_wheel(config))
                    sdist_reqs = tuple(caller.get_requires_for_build_sdist(config))
                    tools = caller.host_tools()
                write_atomic(
                    cached,
                    json.dumps(
                        {
                            "wheel": wheel_reqs,
                            "sdist": sdist_reqs,
                            "host_tools": [list(t) for t in tools],
                            "at": time.time(),
                        }
                    ),
                )
        return BuildRequirements(
            build_backend_name=build_system.build_backend,
            build_system=build_system.requires,
            build_backend=wheel_reqs,
            build_sdist=sdist_reqs,
            host_tools=tools,
        )

    def prepare_metadata(
        self,
        name: NormalizedName,
        version: Version,
        sdist: Path,
        sha256: str,
        settings: Settings,
        requirements: BuildRequirements,
        resolve: ResolveFn,
        wheels: WheelFn,
    ) -> bytes | None:
        """Core metadata from ``prepare_metadata_for_build_wheel`` (None without the hook)."""
        source = self.source_tree(sdist, sha256, settings)
        declared = read_build_system(source)
        build_system = BuildSystem(
            requires=requirements.build_system,
            build_backend=declared.build_backend,
            backend_path=declared.backend_path,
        )
        pins = resolve([*requirements.build_system, *requirements.build_backend])
        cache_key = _digest(
            {
                "format": CACHE_FORMAT,
                "python": self.interpreter.key(),
                "metadata": sha256,
                "build_dir": settings.build_dir,
                "pins": sorted(f"{n}=={v}" for n, v in pins.items()),
                "config_settings": dict(settings.config_settings),
                "env": dict(settings.env),
            }
        )
        cached = self.workdir / "metadata" / f"{cache_key}.METADATA"
        with self._busy(("metadata", cache_key)):
            if cached.exists():
                return cached.read_bytes()
            env = self.environment(pins, wheels)
            with (
                tempfile.TemporaryDirectory(dir=self.workdir) as out,
                self._caller(
                    source, build_system, env, settings, name, version, Path(out)
                ) as caller,
            ):
                dist_info = caller.prepare_metadata_for_build_wheel(
                    Path(out), dict(settings.config_settings) or None
                )
                if dist_info is None:
                    return None
                data = (Path(out) / dist_info / "METADATA").read_bytes()
            write_atomic(cached, data)
            return data
