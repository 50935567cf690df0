"""Running pip against the fake index with the machine's pip configuration shut out.

The build machines configure pip globally (extra index URLs, find-links, a constraints
file); any of that leaking in would make ecosystem tests reach outside 127.0.0.1.
``--isolated`` covers the outer pip only: the pip that build isolation spawns reads config
files and ``PIP_*`` again, hence the scrubbed environment with ``PIP_CONFIG_FILE`` set to
the null device (pip's documented way to load no config file at all).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

_DROPPED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


def clean_pip_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without ``PIP_*`` (and Python path settings), plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PIP_") and key not in _DROPPED
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PIP_NO_CACHE_DIR="1",
    )
    # A proxy configured for the machine must never see requests meant for 127.0.0.1.
    bypass = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    env["NO_PROXY"] = env["no_proxy"] = bypass
    env.update(extra or {})
    return env


def run_pip(
    args: Sequence[str],
    *,
    index_url: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,  # a guard against a hang, generous for a loaded machine
) -> subprocess.CompletedProcess[str]:
    """``python -m pip <args> --isolated --index-url <index_url>``; never raises on failure."""
    command = [sys.executable, "-m", "pip", *args, "--isolated", "--index-url", index_url]
    return subprocess.run(
        command,
        cwd=cwd,
        env=clean_pip_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
