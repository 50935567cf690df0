"""The Python a variant builds with: found on this machine, described once.

A variant's ``python: "3.12"`` is its target, and its builds run with a 3.12
interpreter: every hook (discovery and build) runs in a venv made from it, and
upstream wheels are chosen with its tags. Which one is a fact of this machine,
not of the lock: the lock records only the target's marker values, the build
key records the exact interpreter that built.

Looked for in this order, the first that runs and says it is ``X.Y`` wins:
the variant's ``interpreter:`` path (which must be that version, or it is an
error), the interpreter running affineur, ``pythonX.Y`` on PATH (unless it is
a version manager's shim), a pyenv installation (``$PYENV_ROOT`` or
``~/.pyenv``, newest patch release first), a uv-managed one
(``$UV_PYTHON_INSTALL_DIR``, else ``$XDG_DATA_HOME/uv/python``). None is an
error naming what to install. What each binary said is remembered (see
:func:`find_interpreter`), so a no-op run starts no interpreter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.tags import Tag, compatible_tags, cpython_tags, generic_tags, platform_tags, sys_tags
from packaging.version import InvalidVersion, Version

from affineur.atomic import write_atomic
from affineur.config import Variant
from affineur.errors import AffineurError

__all__ = ["Interpreter", "find_interpreter", "interpreter_of", "running_interpreter"]

# -I: no user site, no PYTHON* variables; the answer is the interpreter's own.
_QUERY = """\
import json, os, sys, sysconfig
print(json.dumps({
    "executable": sys.executable,
    "version": "%d.%d.%d" % sys.version_info[:3],
    "implementation": sys.implementation.name,
    "soabi": sysconfig.get_config_var("SOABI") or "",
    "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "debug": hasattr(sys, "gettotalrefcount"),
    "platform": sysconfig.get_platform(),
    "prefixes": sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}),
}))
"""

_PROBE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Interpreter:
    """One Python on this machine, as builds use it."""

    executable: str
    version: str
    """Its exact release, ``3.12.1``: what the build key holds."""
    implementation: str
    """``sys.implementation.name``: cpython, pypy ..."""
    abi: str
    """The ABI tag of its extension modules (``cp312``, ``cp313t``)."""
    platform: str
    """``sysconfig.get_platform()``; the same as ours means the same platform tags."""
    prefixes: tuple[str, ...]
    """Where it is installed: a venv made from it links there, so the sandbox mounts it."""

    @property
    def series(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def running(self) -> bool:
        """Whether it is the interpreter running affineur (venvs are made in-process)."""
        return _same_file(self.executable, sys.executable)

    def key(self) -> str:
        """What the build key and the build record say about it."""
        return f"{self.implementation} {self.version} {self.abi}"

    def describe(self) -> str:
        """Its name as people write it, ``CPython 3.12.1``."""
        names = {"cpython": "CPython", "pypy": "PyPy", "graalpy": "GraalPy"}
        return f"{names.get(self.implementation, self.implementation)} {self.version}"

    @functools.cached_property
    def tags(self) -> tuple[Tag, ...]:
        """Its wheel tags, best first, as pip running on it would rank them."""
        if self.running:
            return tuple(sys_tags())
        python = tuple(int(p) for p in self.version.split(".")[:2])
        if self.platform == sysconfig.get_platform():
            platforms = list(platform_tags())
        else:
            platforms = [re.sub(r"[-.]", "_", self.platform)]
        if self.implementation == "cpython":
            tags = [*cpython_tags(python, abis=[self.abi], platforms=platforms)]
            short = f"cp{python[0]}{python[1]}"
        else:
            short = f"{self.implementation[:2]}{python[0]}{python[1]}"
            tags = [*generic_tags(short, abis=[self.abi], platforms=platforms)]
        tags += compatible_tags(python, interpreter=short, platforms=platforms)
        return tuple(tags)


def running_interpreter() -> Interpreter:
    """The interpreter running affineur, described without starting a process."""
    major, minor, micro = sys.version_info[:3]
    implementation = sys.implementation.name
    if implementation == "cpython":
        abi = f"cp{major}{minor}"
        if sysconfig.get_config_var("Py_GIL_DISABLED"):
            abi += "t"
        if hasattr(sys, "gettotalrefcount"):
            abi += "d"
    else:
        abi = _abi_of_soabi(sysconfig.get_config_var("SOABI") or "")
    prefixes = sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)})
    return Interpreter(
        executable=sys.executable,
        version=f"{major}.{minor}.{micro}",
        implementation=implementation,
        abi=abi,
        platform=sysconfig.get_platform(),
        prefixes=tuple(prefixes),
    )


def find_interpreter(
    python: str,
    *,
    explicit: str | None = None,
    variant: str = "",
    where: str = "",
    environ: Mapping[str, str] | None = None,
    memo: Path | None = None,
) -> Interpreter:
    """The interpreter a variant whose target is ``python`` (``X.Y``) builds with.

    ``variant`` and ``where`` (its file) only shape the error a user reads.
    ``memo`` (a JSON file) remembers what each binary said, by its real path,
    size and modification time: a process start per run costs more than a no-op
    ``doit`` may take.
    """
    environ = os.environ if environ is None else environ
    named = f"variant {variant!r}" if variant else "the variant"
    if explicit is not None:
        found = _probe(str(Path(explicit).expanduser()), memo)
        if found is None:
            raise AffineurError(
                f"{named} names the interpreter {explicit}, which does not run",
                hint=f"fix 'interpreter:' in {where or 'the variant'}, or remove it to "
                f"use any Python {python} found here",
                file=where or None,
                key_path=("interpreter",),
                stage="config",
            )
        if found.series != python:
            raise AffineurError(
                f"{named} builds for Python {python}, but its interpreter {explicit} "
                f"is Python {found.version}",
                hint=f"point 'interpreter:' at a Python {python}, or change 'python:'",
                file=where or None,
                key_path=("interpreter",),
                stage="config",
            )
        return found
    ours = running_interpreter()
    if ours.series == python:
        return ours
    return _search(python, tuple(sorted(_search_environ(environ).items())), named, where, memo)


def _search_environ(environ: Mapping[str, str]) -> dict[str, str]:
    keys = ("PATH", "PYENV_ROOT", "HOME", "UV_PYTHON_INSTALL_DIR", "XDG_DATA_HOME")
    return {k: environ[k] for k in keys if k in environ}


@functools.cache
def _search(
    python: str,
    environ_items: tuple[tuple[str, str], ...],
    named: str,
    where: str,
    memo: Path | None,
) -> Interpreter:
    """Asked once per process per series: each candidate costs a process start."""
    environ = dict(environ_items)
    looked: list[str] = []
    for candidate in _candidates(python, environ):
        looked.append(candidate)
        found = _probe(candidate, memo)
        if found is not None and found.series == python:
            return found
    raise AffineurError(
        f"{named} builds for Python {python}, and no Python {python} was found on this machine",
        hint=(
            f"install it (pyenv install {python}, or uv python install {python}), put "
            f"python{python} on PATH, or name it with 'interpreter: /path/to/python{python}' "
            f"in {where or 'the variant'}"
        ),
        file=where or None,
        stage="config",
        causes=tuple(f"looked at {c}" for c in looked),
    )


def _candidates(python: str, environ: Mapping[str, str]) -> Iterator[str]:
    on_path = shutil.which(f"python{python}", path=environ.get("PATH", os.defpath))
    # A version manager's shim (pyenv's, asdf's) picks its Python anew at every start,
    # slowly, so no memo can stand for it: the installations it picks from come next.
    if on_path and Path(on_path).parent.name != "shims":
        yield on_path
    home = Path(environ.get("HOME") or Path.home())
    roots = [Path(environ["PYENV_ROOT"])] if environ.get("PYENV_ROOT") else []
    roots.append(home / ".pyenv")
    for root in dict.fromkeys(roots):
        yield from _newest_first(root / "versions", rf"{re.escape(python)}\.\d+", python)
    uv_root = environ.get("UV_PYTHON_INSTALL_DIR") or str(
        Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "uv" / "python"
    )
    yield from _newest_first(
        Path(uv_root), rf"cpython-{re.escape(python)}\.\d+-[^/]*", python, version_at=1
    )


def _newest_first(folder: Path, pattern: str, python: str, version_at: int = 0) -> Iterator[str]:
    """``folder/<release>/bin/pythonX.Y`` for each release folder, newest release first."""
    try:
        names = [p.name for p in folder.iterdir() if re.fullmatch(pattern, p.name)]
    except OSError:
        return
    releases = []
    for name in names:
        try:
            releases.append((Version(name.split("-")[version_at]), name))
        except InvalidVersion:
            continue
    for _, name in sorted(releases, reverse=True):
        binary = folder / name / "bin" / f"python{python}"
        if binary.is_file():
            yield str(binary)


def _probe(executable: str, memo: Path | None = None) -> Interpreter | None:
    """What ``executable`` is, from ``memo`` while the binary is unchanged, else asked."""
    try:
        real = Path(executable).resolve(strict=True)
        info = real.stat()
    except OSError:
        return None
    stamp = [str(real), info.st_size, info.st_mtime_ns]
    known = _read_memo(memo).get(executable) if memo is not None else None
    if known is not None and known.get("stamp") == stamp:
        try:
            data = known["interpreter"]
            return Interpreter(**{**data, "prefixes": tuple(data["prefixes"])})
        except (KeyError, TypeError):
            pass
    found = _ask(executable)
    if found is not None and memo is not None:
        entries = _read_memo(memo)
        entries[executable] = {"stamp": stamp, "interpreter": dataclasses.asdict(found)}
        with contextlib.suppress(OSError):
            write_atomic(memo, json.dumps(entries, indent=1, sort_keys=True))
    return found


def _read_memo(memo: Path) -> dict[str, Any]:
    try:
        data = json.loads(memo.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _ask(executable: str) -> Interpreter | None:
    """Ask ``executable`` what it is; None when it does not run."""
    try:
        done = subprocess.run(
            [executable, "-I", "-c", _QUERY],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            return None
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    version = str(data["version"])
    implementation = str(data["implementation"])
    if implementation == "cpython":
        major, minor = version.split(".")[:2]
        abi = f"cp{major}{minor}" + ("t" if data["gil_disabled"] else "")
        abi += "d" if data["debug"] else ""
    else:
        abi = _abi_of_soabi(str(data["soabi"]))
    return Interpreter(
        executable=str(data["executable"]),
        version=version,
        implementation=implementation,
        abi=abi,
        platform=str(data["platform"]),
        prefixes=tuple(str(p) for p in data["prefixes"]),
    )


def _abi_of_soabi(soabi: str) -> str:
    """``pypy310-pp73-x86_64-linux-gnu`` -> ``pypy310_pp73``, as packaging names it."""
    parts = soabi.split("-")
    return "_".join(parts[:2]).replace(".", "_") if soabi else "none"


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).samefile(b)
    except OSError:
        return False


def interpreter_of(variant: Variant, memo: Path | None = None) -> Interpreter:
    """The interpreter ``variant`` builds with (an error naming the fix when there is none)."""
    return find_interpreter(
        variant.python,
        explicit=variant.interpreter,
        variant=variant.name,
        where=_shown(variant.file),
        memo=memo,
    )


def _shown(path: Path) -> str:
    """A variant's file as a user types it: relative to the checkout when inside it."""
    parts = path.parts
    if len(parts) >= 2 and parts[-2] == "variants":
        return f"variants/{parts[-1]}"
    return str(path)
