"""The no-op benchmark script runs end to end on a small lock, and its check can fail.

The figures themselves are not asserted (they depend on the machine); what is
asserted is that the script sets up a checkout doit accepts, finds every no-op
run clean, and would notice a task that did run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.benchmarks import noop
from tests.paths import REPO

SCRIPT = REPO / "tests" / "benchmarks" / "noop.py"
PACKAGES = 30


def test_noop_benchmark_reports_its_figures(tmp_path: Path) -> None:
    root = tmp_path / "bench"
    argv = ["--packages", str(PACKAGES), "--runs", "1", "--dir", str(root), "--keep"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert re.search(r"^  doit +min \d+\.\d{3} s +median \d+\.\d{3} s", out, re.M), out
    assert re.search(r"^  doit -n 2 +min \d+\.\d{3} s", out, re.M), out
    assert "tasks executed in no-op runs: 0" in out
    tasks = re.search(r"tasks \('doit list --all'\): (\d+)", out)
    assert tasks is not None, out
    # A build and a download task per package, plus lock and publish.
    assert int(tasks.group(1)) >= 2 * PACKAGES + 2
    assert re.search(r"import affineur\.run +\d+\.\d{3} s", out), out

    # The same checkout with its published index gone: the next run must publish
    # again, and the check must say so.
    shutil.rmtree(root / "dist")
    before = noop.Snapshot.take(root)
    result = noop.run(root, "-m", "doit").check()
    signs = noop.executed_tasks(root, result, before)
    assert "publish:bench:cpu" in signs, signs
    assert any(s.startswith("files changed: dist/") for s in signs), signs
    assert not any(s.startswith("build:") for s in signs), signs
