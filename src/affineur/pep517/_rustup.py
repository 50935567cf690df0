"""Which toolchain rustup's proxies run, read from rustup's settings without running rustup.

Kept apart from the rest of the Rust support: the host-tool fingerprint of every
run (a no-op included) asks it, and must not load archives, TOML writers or the
lock's data model to do so.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

__all__ = ["rustup_toolchain_bin"]


def rustup_toolchain_bin(environ: Mapping[str, str] | None = None) -> Path | None:
    """The bin folder of the toolchain rustup's proxies would run, read from rustup's
    settings without running anything (None when that is not plain to see)."""
    environ = os.environ if environ is None else environ
    rustup_home = Path(environ.get("RUSTUP_HOME") or Path.home() / ".rustup")
    name = environ.get("RUSTUP_TOOLCHAIN")
    if not name:
        try:
            settings = tomllib.loads((rustup_home / "settings.toml").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None
        name = settings.get("default_toolchain")
    if not isinstance(name, str) or not name or "/" in name:
        return None
    found = rustup_home / "toolchains" / name / "bin"
    return found if (found / "rustc").is_file() else None
