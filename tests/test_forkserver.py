"""The fork server (tests/forkserver.py) runs a command as a new interpreter would."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.ecosystem import FakeIndex
from tests.workspace import Workspace, make_workspace


@pytest.mark.parametrize(
    "argv",
    [
        ("-m", "doit", "list"),
        ("-m", "doit", "no-such-task"),
        ("-m", "affineur.cli", "--no-such-option"),
    ],
)
def test_a_forked_command_prints_and_exits_as_a_new_interpreter_does(
    argv: tuple[str, ...],
    tmp_path: Path,
    empty_fake_index: FakeIndex,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws: Workspace = make_workspace(tmp_path / "checkout", empty_fake_index)
    ws.collection(["lib-fast"])
    forked = ws.run(*argv)
    monkeypatch.setenv("AFFINEUR_TEST_FORK", "0")
    cold = ws.run(*argv)
    assert _seen(forked) == _seen(cold)
    assert "Traceback" not in cold.stderr


def _seen(result: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    """Exit code and output, progress lines' elapsed times left out."""
    return (
        result.returncode,
        re.sub(r"\[ *[0-9.]+s\]", "[time]", result.stdout),
        re.sub(r"\[ *[0-9.]+s\]", "[time]", result.stderr),
    )
