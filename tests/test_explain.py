"""why and tree over lock graphs, build edges and cycles included."""

from __future__ import annotations

from pathlib import Path

import pytest

from affineur.cli import main
from affineur.errors import AffineurError
from affineur.lock import format_path, tree_lines, why
from tests.lockfactory import graph, pkg, web_graph, write_project


def test_why_lists_install_and_build_paths_shortest_first() -> None:
    paths, truncated = why(web_graph(), "packaging")
    assert not truncated
    assert [format_path(p) for p in paths] == [
        "requests==2.32.3 (top-level: requests>=2) ==install==> urllib3==2.2.1"
        " ==build-system==> hatchling==1.25.0 ==install==> packaging==24.1",
    ]


def test_why_a_build_tool_reached_several_ways() -> None:
    paths, _ = why(web_graph(), "Flit_Core")
    texts = [format_path(p) for p in paths]
    assert texts[0] == "idna==3.7 (top-level: idna) ==build-system==> flit-core==3.9.0"
    assert (
        "requests==2.32.3 (top-level: requests>=2) ==install==> idna==3.7"
        " ==build-system==> flit-core==3.9.0"
    ) in texts
    # idna directly, idna via requests, and packaging (hatchling's runtime dependency)
    assert len(texts) == 3


def test_why_of_a_top_level_package() -> None:
    paths, _ = why(web_graph(), "requests")
    assert [format_path(p) for p in paths] == ["requests==2.32.3 (top-level: requests>=2)"]


def test_why_every_version_of_a_name() -> None:
    paths, _ = why(web_graph(), "setuptools")
    ends = {p.edges[-1].key for p in paths}
    assert ends == {"setuptools==70.0.0", "setuptools==69.5.1"}


def test_why_unknown_name_suggests_the_close_one() -> None:
    with pytest.raises(AffineurError) as info:
        why(web_graph(), "setuptool")
    assert info.value.hint == "did you mean 'setuptools'?"


def test_why_survives_cycles_and_limits_paths() -> None:
    g = graph(
        pkg("a==1", install=["b==1"]),
        pkg("b==1", install=["a==1", "c==1"]),
        pkg("c==1", install=["b==1"]),
        top=["a==1"],
    )
    paths, truncated = why(g, "c")
    assert [format_path(p) for p in paths] == [
        "a==1 (top-level: a) ==install==> b==1 ==install==> c==1"
    ]
    assert not truncated
    wide = graph(
        *[pkg(f"m{i}==1", install=["x==1"]) for i in range(5)],
        pkg("x==1"),
        top=[f"m{i}==1" for i in range(5)],
    )
    paths, truncated = why(wide, "x", limit=3)
    assert len(paths) == 3
    assert truncated


def test_tree_marks_build_edges_and_repeats() -> None:
    assert tree_lines(web_graph()) == [
        "web/cpu",
        "  idna==3.7",
        "    [build-system] flit-core==3.9.0",
        "  requests==2.32.3",
        "    idna==3.7 (*)",
        "    urllib3==2.2.1",
        "      [build-system] hatchling==1.25.0",
        "        packaging==24.1",
        "          [build-system] flit-core==3.9.0",
        "        [build-system] setuptools==69.5.1",
        "    [build-system] setuptools==70.0.0",
    ]
    install_only = tree_lines(web_graph(), build=False)
    assert not any("[build" in line for line in install_only)
    assert install_only == [
        "web/cpu",
        "  idna==3.7",
        "  requests==2.32.3",
        "    idna==3.7",
        "    urllib3==2.2.1",
    ]


def test_tree_is_cycle_safe() -> None:
    g = graph(
        pkg("a==1", install=["b==1"]),
        pkg("b==1", install=["a==1"]),
        top=["a==1"],
    )
    assert tree_lines(g) == ["web/cpu", "  a==1", "    b==1", "      a==1 (cycle)"]


# --- affineur why / tree ----------------------------------------------------------


def test_why_and_tree_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_project(tmp_path, [web_graph()])
    assert main(["--root", str(tmp_path), "why", "hatchling"]) == 0
    assert capsys.readouterr().out == (
        "requests==2.32.3 (top-level: requests>=2) ==install==> urllib3==2.2.1"
        " ==build-system==> hatchling==1.25.0\n"
    )
    assert main(["--root", str(tmp_path), "tree", "--edges", "install"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "web/cpu"


def test_why_across_locks_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cuda = graph(pkg("idna==3.6"), top=["idna==3.6"], variant="cuda")
    write_project(tmp_path, [web_graph(), cuda])
    assert main(["--root", str(tmp_path), "why", "idna"]) == 0
    out = capsys.readouterr().out
    assert "web/cpu:\n" in out
    assert "web/cuda:\nidna==3.6 (top-level: idna)\n" in out
    assert main(["--root", str(tmp_path), "tree"]) == 2
    assert capsys.readouterr().err == (
        "error: several locks match (web/cpu, web/cuda); choose one with --variant\n"
    )
    assert main(["--root", str(tmp_path), "why", "urlib3", "--variant", "cpu"]) == 2
    assert "unknown package 'urlib3' in the lock of web/cpu; choose from: urllib3," in (
        capsys.readouterr().err
    )
