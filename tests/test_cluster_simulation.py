"""The cluster simulation script runs and prints its figures (the figures are not asserted)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.paths import REPO

SCRIPT = REPO / "tests" / "benchmarks" / "cluster.py"


def test_the_simulation_prints_its_figures() -> None:
    argv = ["--packages", "120", "--variants", "2", "--workers", "1", "4", "--entries", "5"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=600
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "120 packages x 2 variants = 240 builds" in out
    assert re.search(r"^\s+4 workers x 4 slots: -n 32 +[\d.]+ h", out, re.M), out
    # A lock change touching 10 packages rebuilds 10 per variant, by the engine's key rule.
    assert re.search(r"hit rate +\d+\.\d% \(20 of 240 rebuilt\)", out), out
    assert "hit rate   0.0% (240 of 240 rebuilt)" in out
    assert re.search(r"fetch [\d.]+ ms per entry", out), out
