"""The host tools a build can use, fingerprinted (name and version) for the build key.

A build environment holds only locked wheels, but a backend also runs what it
finds on the build PATH: the C and C++ compilers, rustc and cargo, cmake, ninja,
patchelf, pkg-config. Their versions change the wheel (a new compiler, new code),
so they belong in the build key: a compiler upgrade rebuilds, and the cache
record says which tools made the wheel. What does not change the wheel stays
out: the kernel release, the host name, where a tool is installed.

Asking each tool its version costs a process per tool, too much for a no-op
``doit``. The answers are remembered in a small JSON file, keyed by the tool's
real path (symlinks resolved: ``cc`` is whichever compiler it points to), its
modification time and its size, so they are asked again only when a binary
changed. A no-op run costs a PATH lookup and a ``stat`` per tool.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from affineur.atomic import write_atomic
from affineur.pep517 import probe_version, rustup_toolchain_bin

__all__ = ["HOST_TOOLS", "HostTools", "Probe"]

HOST_TOOLS: tuple[tuple[str, str | None], ...] = (
    ("cc", "CC"),
    ("c++", "CXX"),
    ("rustc", "RUSTC"),
    ("cargo", "CARGO"),
    ("cmake", None),
    ("ninja", None),
    ("patchelf", None),
    ("pkg-config", "PKG_CONFIG"),
)
"""Each tool by the name backends call it, and the variable that names another one
(``CC=clang`` makes clang the C compiler a backend uses)."""

Probe = Callable[[Path], str]
"""Asks a tool binary its version: the first line it prints for ``--version``."""


class HostTools:
    """The fingerprint of the host tools on one PATH, with probe answers remembered."""

    def __init__(
        self,
        memo: Path,
        *,
        environ: Mapping[str, str] | None = None,
        probe: Probe = probe_version,
    ) -> None:
        self.memo = memo
        self.environ = os.environ if environ is None else environ
        self.probe = probe
        self._fingerprint: dict[str, str] | None = None

    def find(self, name: str, variable: str | None) -> Path | None:
        """The binary a backend would run for ``name``, symlinks resolved (None: absent)."""
        command = self.environ.get(variable, "").strip() if variable else ""
        try:
            program = shlex.split(command)[0] if command else name
        except (ValueError, IndexError):
            program = name
        found = shutil.which(program, path=self.environ.get("PATH", os.defpath))
        if not found:
            return None
        real = Path(found).resolve()
        if real.name.startswith("rustup") and name in ("rustc", "cargo"):
            # A rustup proxy: the toolchain it runs is what builds use (see pep517's
            # rust module), and asking the proxy would give rustup's own version.
            toolchain = rustup_toolchain_bin(self.environ)
            if toolchain is not None and (toolchain / name).is_file():
                return (toolchain / name).resolve()
        return real

    def fingerprint(self) -> dict[str, str]:
        """``{tool: version line}`` for every tool found; absent tools are left out."""
        if self._fingerprint is not None:
            return dict(self._fingerprint)
        known = self._read_memo()
        changed = False
        out: dict[str, str] = {}
        for name, variable in HOST_TOOLS:
            binary = self.find(name, variable)
            if binary is None:
                continue
            try:
                st = binary.stat()
            except OSError:
                continue
            stamp = {"mtime_ns": st.st_mtime_ns, "size": st.st_size}
            entry = known.get(str(binary))
            if not (isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items())):
                entry = {**stamp, "version": self.probe(binary)}
                known[str(binary)] = entry
                changed = True
            out[name] = str(entry["version"])
        if changed:
            # A read-only build/ costs a probe next time, nothing more.
            with contextlib.suppress(OSError):
                write_atomic(self.memo, json.dumps(known, indent=1, sort_keys=True) + "\n")
        self._fingerprint = out
        return dict(out)

    def _read_memo(self) -> dict[str, Any]:
        try:
            data = json.loads(self.memo.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
