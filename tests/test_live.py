"""The live progress display, in a real pseudo-terminal, driven by a real doit run."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from affineur.run._live import Durations, estimate_left, last_line
from tests.workspace import Workspace

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_terminal(ws: Workspace, *args: str, timeout: float = 300) -> tuple[int, str]:
    """``python -m doit ARGS`` with its output on a pseudo-terminal: (status, what it drew)."""
    master, slave = pty.openpty()
    env = ws.environ({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})
    process = subprocess.Popen(
        [sys.executable, "-m", "doit", *args],
        cwd=ws.root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the terminal's other end closed
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        status = process.wait(timeout=30)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return status, b"".join(chunks).decode("utf-8", errors="replace")


def test_a_terminal_gets_a_live_bar_running_builds_and_pinned_failures(
    workspace: Workspace,
) -> None:
    workspace.collection(["meta-static", "broken-nowheel"])
    # Test mode keeps going after the failure, so every package gets its turn.
    status, raw = run_in_terminal(workspace, "-n", "2", "test_mode=1")
    assert status != 0  # broken-nowheel fails
    text = ANSI.sub("", raw)
    assert "\x1b[" in raw  # drawn, not printed line by line
    # The bar counts packages, here 3 (meta-static, meta-dep, broken-nowheel).
    assert re.search(r"[0-3]/3 packages", text)
    assert "ETA unknown (no earlier run)" in text
    # A running build has its own row: its name, then how long it has run.
    assert re.search(r"  cpu:meta-(static|dep)-1\.0\s+\d+(\.\d)?s", text)
    # The failure is printed above the bar, with the log that stays.
    failed = re.search(r"\[\d/3\] FAILED cpu:broken-nowheel-1\.0 \(.*\): .*hook", text)
    assert failed, text
    log = workspace.root / "build/logs/cpu/broken-nowheel-1.0.log"
    assert f"log: {log}" in text and log.is_file()
    assert "3 packages: 2 built, 0 reused from cache, 0 up to date" in text, text[-1500:]
    durations = json.loads((workspace.root / "build/reports/durations.json").read_text())
    assert set(durations) == {"cpu:meta-static", "cpu:meta-dep"}

    # The next run knows how long builds take: its estimate is a time.
    status, raw = run_in_terminal(workspace, "-n", "2", "test_mode=1")
    text = ANSI.sub("", raw)
    assert "1/3 packages" in text or "2/3 packages" in text
    assert re.search(r"ETA \d+(\.\d)?s", text), text
    assert "ETA unknown" not in text


def test_the_estimate_spreads_remaining_work_over_workers(tmp_path: pytest.TempPathFactory) -> None:
    durations = Durations(None)
    assert estimate_left(["cpu:a"], {}, durations, 2) is None
    durations.seconds = {"cpu:a": 10.0, "cpu:b": 30.0}
    # b has run 12 of its 30 s; c was never built and counts as the median (20 s).
    assert estimate_left(["cpu:a", "cpu:c"], {"cpu:b": 12.0}, durations, 2) == (10 + 20 + 18) / 2


def test_last_line_reads_only_the_tail(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    log = Path(str(tmp_path)) / "build.log"
    log.write_text("x" * 100_000 + "\ncompiling foo.c\n\n")
    assert last_line(log) == "compiling foo.c"
    assert last_line(None) == ""
    assert last_line(log.with_name("missing.log")) == ""
