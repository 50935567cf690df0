"""affineur check: config and locks validated, staleness caught, never the network."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from affineur.cli import main
from affineur.config import load_project
from affineur.graph import Graph
from affineur.lock import check_project, input_hash
from affineur.pep517 import running_interpreter
from tests.lockfactory import graph, pkg, web_graph, write_lock, write_project


def fresh(root: Path, g: Graph) -> Graph:
    project = load_project(root)
    return replace(
        g,
        input_hash=input_hash(
            project, project.collections[g.collection], project.variants[g.variant]
        ),
    )


def good_project(root: Path) -> Path:
    write_project(root)
    write_lock(root, fresh(root, web_graph()))
    return root


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any index client or socket connection fails the test."""
    import affineur.index._client

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("check must not use the network")

    monkeypatch.setattr(affineur.index._client.IndexClient, "__init__", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.usefixtures("offline")
def test_fresh_valid_lock_passes(tmp_path: Path) -> None:
    report = check_project(good_project(tmp_path))
    assert report.ok
    *checked, sandbox, python = report.lines()
    assert checked == [
        "ok        config",
        "ok        web/cpu: 8 packages, 3 installed, 0 of 8 sources with publisher attestations",
    ]
    # Which sandbox builds get, and which Python, depend on the machine; the lines are
    # there either way.
    assert sandbox.startswith("sandbox   cpu: ")
    assert python.startswith(f"python    cpu: {running_interpreter().key()} (")


@pytest.mark.usefixtures("offline")
def test_edited_collection_makes_the_lock_stale(tmp_path: Path) -> None:
    good_project(tmp_path)
    path = tmp_path / "collections" / "web.toml"
    path.write_text(path.read_text().replace('"idna",', '"idna",\n    "urllib3",'))
    report = check_project(tmp_path)
    assert not report.ok
    assert report.problems() == [
        "stale     web/cpu: the config changed since it was locked; "
        "run 'doit lock' (or 'affineur lock') and commit lock/"
    ]


@pytest.mark.usefixtures("offline")
def test_every_problem_is_listed(tmp_path: Path) -> None:
    good_project(tmp_path)
    (tmp_path / "variants" / "gpu.yaml").write_text("python: '3.11'\n")
    (tmp_path / "collections" / "ml.toml").write_text(
        "variants = ['cpu', 'gpu']\nrequirements = ['numpy']\n"
    )
    # ml/cpu: a dangling reference; ml/gpu: missing; old/cpu: orphan
    broken = graph(pkg("numpy==2.0", build=["meson==1.5"]), top=["numpy==2.0"], collection="ml")
    data = json.loads((tmp_path / "lock" / "web" / "cpu" / "graph.json").read_text())
    write_lock(tmp_path, broken)
    ml = tmp_path / "lock" / "ml" / "cpu" / "graph.json"
    raw = json.loads(ml.read_text())
    raw["nodes"]["numpy==2.0"]["build_env"] = ["meson==9"]
    ml.write_text(json.dumps(raw))
    orphan = tmp_path / "lock" / "old" / "cpu" / "graph.json"
    orphan.parent.mkdir(parents=True)
    orphan.write_text(json.dumps(data | {"collection": "old"}))
    report = check_project(tmp_path)
    states = {(s.collection, s.variant): s.state for s in report.locks}
    assert states == {
        ("ml", "cpu"): "invalid",
        ("ml", "gpu"): "missing",
        ("old", "cpu"): "orphan",
        ("web", "cpu"): "ok",  # other collections and variants do not make it stale
    }
    problems = report.problems()
    assert any("meson==9" in p for p in problems)
    assert any(p.startswith("missing   ml/gpu: no lock/ml/gpu/graph.json") for p in problems)


@pytest.mark.usefixtures("offline")
def test_schema_errors_and_cycles_are_invalid(tmp_path: Path) -> None:
    good_project(tmp_path)
    lock = tmp_path / "lock" / "web" / "cpu" / "graph.json"
    raw = json.loads(lock.read_text())
    raw["nodes"]["idna==3.7"]["sdist"]["sha256"] = "nothex"
    lock.write_text(json.dumps(raw))
    (status,) = check_project(tmp_path).locks
    assert status.state == "invalid"
    assert "sha256" in status.detail
    cyclic = graph(pkg("a==1", build=["b==1"]), pkg("b==1", build=["a==1"]), top=["a==1", "b==1"])
    write_lock(tmp_path, fresh(tmp_path, cyclic))
    (status,) = check_project(tmp_path).locks
    assert status.state == "invalid"
    assert "build-time cycle" in status.detail


@pytest.mark.usefixtures("offline")
def test_bad_config_still_validates_locks(tmp_path: Path) -> None:
    good_project(tmp_path)
    (tmp_path / "collections" / "web.toml").write_text("variants = ['cpu']\nrequirement = []\n")
    report = check_project(tmp_path)
    assert not report.ok
    assert any("requirement" in p for p in report.config_problems)
    assert [s.state for s in report.locks] == ["unchecked"]


@pytest.mark.usefixtures("offline")
def test_check_command_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good_project(tmp_path)
    assert main(["--root", str(tmp_path), "check"]) == 0
    assert (
        "ok        web/cpu: 8 packages, 3 installed, 0 of 8 sources with publisher attestations\n"
        "sandbox   cpu: "
    ) in capsys.readouterr().out
    (tmp_path / "variants" / "cpu.yaml").write_text("python: '3.12'\n")
    assert main(["--root", str(tmp_path), "check"]) == 2
    captured = capsys.readouterr()
    assert "stale     web/cpu" in captured.out
    assert captured.err.startswith("error: 1 problem(s) in config or locks\n  stale     web/cpu")
