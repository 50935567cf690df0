"""dot, mermaid and svg rendering of a lock; svg with and without Graphviz."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from affineur.cli import dot_to_svg, main, to_dot, to_mermaid
from affineur.errors import AffineurError
from tests.lockfactory import graph, pkg, web_graph, write_project


def test_dot_draws_install_solid_and_build_dashed() -> None:
    dot = to_dot(web_graph())
    assert dot.startswith('digraph "web/cpu" {\n')
    assert '  "web/cpu" -> "requests==2.32.3";' in dot
    assert '  "requests==2.32.3" -> "urllib3==2.2.1";' in dot
    assert '  "idna==3.7" -> "flit-core==3.9.0" [style=dashed, label="build-system"];' in dot
    assert '  "setuptools==69.5.1" [style=dashed];' in dot  # build-only package
    assert '  "idna==3.7";' in dot


def test_edge_filters() -> None:
    install = to_dot(web_graph(), edges="install")
    assert "flit-core" not in install
    assert "setuptools" not in install
    assert '"requests==2.32.3" -> "idna==3.7"' in install
    build = to_dot(web_graph(), edges="build")
    assert '"urllib3==2.2.1" -> "hatchling==1.25.0" [style=dashed' in build
    assert '"requests==2.32.3" -> "urllib3==2.2.1";' in build  # leads to a build edge
    assert '"hatchling==1.25.0" -> "packaging==24.1";' in build
    assert '"requests==2.32.3" -> "idna==3.7";' in build


def test_build_filter_drops_install_edges_leading_nowhere() -> None:
    g = graph(
        pkg("a==1", install=["b==1"], build=["t==1"]),
        pkg("b==1", prebuilt=True),
        pkg("t==1"),
        top=["a==1"],
    )
    build = to_dot(g, edges="build")
    assert '"a==1" -> "b==1"' not in build
    assert '"a==1" -> "t==1" [style=dashed, label="build-system"];' in build


def test_mermaid_uses_plain_ids_with_key_labels() -> None:
    text = to_mermaid(web_graph())
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  root(["web/cpu"])' in lines
    ids = {
        line.split("[")[0].strip(): line for line in lines if '["' in line and "root" not in line
    }
    label = {v.split('"')[1]: k for k, v in ids.items()}
    assert f"  {label['idna==3.7']} -. build-system .-> {label['flit-core==3.9.0']}" in lines
    assert f"  root --> {label['requests==2.32.3']}" in lines


def test_cycles_render() -> None:
    g = graph(pkg("a==1", install=["b==1"]), pkg("b==1", install=["a==1"]), top=["a==1"])
    dot = to_dot(g)
    assert '"a==1" -> "b==1";' in dot
    assert '"b==1" -> "a==1";' in dot


def test_svg_without_graphviz_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AffineurError) as info:
        dot_to_svg(to_dot(web_graph()))
    assert "not installed" in info.value.message
    assert info.value.hint is not None and "--format dot" in info.value.hint


def fake_dot(bin_dir: Path, script: str) -> None:
    path = bin_dir / "dot"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_svg_pipes_dot_through_graphviz(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A stand-in dot that proves the dot text arrives on stdin with -Tsvg.
    fake_dot(tmp_path, 'echo "<svg args=\\"$*\\">"; cat; echo "</svg>"')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    dot = to_dot(web_graph())
    svg = dot_to_svg(dot)
    assert svg.startswith('<svg args="-Tsvg">\n')
    assert dot in svg


def test_svg_reports_a_graphviz_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_dot(tmp_path, 'echo "syntax error in line 1" >&2; exit 1')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(AffineurError) as info:
        dot_to_svg("digraph {")
    assert list(info.value.causes) == ["syntax error in line 1"]


# --- affineur graph ---------------------------------------------------------------


def test_graph_command_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_project(tmp_path, [web_graph()])
    out = tmp_path / "web.mmd"
    assert main(["--root", str(tmp_path), "graph", "--format", "mermaid", "-o", str(out)]) == 0
    assert out.read_text() == to_mermaid(web_graph())
    assert main(["--root", str(tmp_path), "graph", "--edges", "install"]) == 0
    assert capsys.readouterr().out.endswith(to_dot(web_graph(), edges="install"))


def test_graph_svg_without_graphviz_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_project(tmp_path / "p", [web_graph()])
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["--root", str(tmp_path / "p"), "graph", "--format", "svg"]) == 2
    err = capsys.readouterr().err
    assert "'dot' program is not installed" in err
    assert "hint: install graphviz, or use --format dot" in err
