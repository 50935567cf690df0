"""The code checks that police the tree: ruff (lint and format) and mypy (strict on src/)."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib

from tests.paths import REPO


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)


def test_ruff_lint_and_format() -> None:
    lint = run(sys.executable, "-m", "ruff", "check", "src", "tests", "dodo.py")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run(sys.executable, "-m", "ruff", "format", "--check", "src", "tests", "dodo.py")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict() -> None:
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command_default_run_then_slow() -> None:
    """CI runs exactly what the README tells a contributor; together they run every test."""
    readme = (REPO / "README.md").read_text()
    (command,) = [
        line.strip()
        for line in readme.splitlines()
        if line.startswith("    ") and "python -m pytest" in line
    ]
    ci = (REPO / ".ci" / "run").read_text()
    assert command in ci.splitlines()
    default_run, slow_run = command.split(" && ")[-2:]
    assert default_run == ".venv/bin/python -m pytest"
    assert slow_run == ".venv/bin/python -m pytest -m slow"
    addopts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]
    assert shlex.split(addopts["ini_options"]["addopts"])[-2:] == ["-m", "not slow"]
