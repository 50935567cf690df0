"""The example repository that ships with affineur is consistent as committed."""

from __future__ import annotations

import subprocess
import sys

from tests.paths import REPO


def test_the_committed_example_locks_are_valid_and_fresh() -> None:
    # `affineur check` reads no network: it validates config and locks and compares
    # each lock's input hash with the current files.
    result = subprocess.run(
        [sys.executable, "-m", "affineur.cli", "check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
