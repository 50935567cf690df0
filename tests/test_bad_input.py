"""Bad input through `doit` and `affineur`: one clear error, a non-zero exit, never a traceback,
and nothing left half-written."""

from __future__ import annotations

import pytest

from tests.workspace import Workspace, ok


def no_traceback(result_stdout: str, result_stderr: str) -> None:
    assert "Traceback" not in result_stdout + result_stderr


@pytest.mark.parametrize("command", [(), ("list",), ("lock",)])
def test_a_broken_collection_stops_doit_with_its_file_and_line(
    workspace: Workspace, command: tuple[str, ...]
) -> None:
    workspace.write("collections/demo.toml", 'variants = ["cpu"]\nrequirements = = 1\n')
    result = workspace.doit(*command)
    assert result.returncode != 0
    no_traceback(result.stdout, result.stderr)
    assert "collections/demo.toml:2: invalid TOML" in result.stderr


def test_an_unknown_key_names_the_allowed_ones(workspace: Workspace) -> None:
    workspace.collection(["app"])
    workspace.write("variants/cpu.yaml", "description: cpu\nresourses: {cpu: 2}\n")
    result = workspace.doit()
    assert result.returncode != 0
    no_traceback(result.stdout, result.stderr)
    assert "variants/cpu.yaml:2: resourses: unknown key 'resourses'" in result.stderr
    assert "resources" in result.stderr  # the key they meant


def test_a_damaged_lock_is_reported_and_left_for_the_user(workspace: Workspace) -> None:
    workspace.collection(["lib-fast"])
    ok(workspace.doit("lock"))
    graph = workspace.root / "lock/demo/cpu/graph.json"
    graph.write_text('{"nodes": ')
    for result in (workspace.doit(), workspace.affineur("check")):
        assert result.returncode != 0
        no_traceback(result.stdout, result.stderr)
        assert "graph.json: not valid JSON" in result.stdout + result.stderr
    assert graph.read_text() == '{"nodes": '


def test_a_failed_relock_keeps_the_previous_lock(workspace: Workspace) -> None:
    workspace.collection(["lib-fast"])
    ok(workspace.doit("lock"))
    before = (workspace.root / "lock/demo/cpu/graph.json").read_bytes()
    workspace.collection(["conflict-x", "conflict-y"])
    result = workspace.affineur("lock")
    assert result.returncode == 2
    no_traceback(result.stdout, result.stderr)
    assert (workspace.root / "lock/demo/cpu/graph.json").read_bytes() == before
    assert not list((workspace.root / "lock/demo/cpu").glob(".*tmp"))


def test_affineur_outside_a_checkout_says_where_to_run_it(tmp_path: pytest.TempPathFactory) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "affineur.cli", "--root", str(tmp_path), "lock"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "no collections/ folder" in result.stderr
    assert "hint: pass the folder that holds collections/" in result.stderr
