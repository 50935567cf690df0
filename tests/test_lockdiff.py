"""Lock diffs: pairing versions, scopes, build environments, hash changes, rendering."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from affineur.cli import main
from affineur.graph import FileRef, Graph, NodeKey
from affineur.lock import (
    BuildEnvChange,
    VersionChange,
    diff_graphs,
    diff_locks,
    render_markdown,
    render_text,
)
from affineur.lock._diff import pair_versions
from tests.lockfactory import commit_all, git, graph, pkg, web_graph, write_lock, write_project


def test_identical_locks_have_no_changes() -> None:
    d = diff_graphs(web_graph(), web_graph())
    assert not d.changed
    assert render_text([d]) == ""
    assert render_markdown([d]) == "No lock changes.\n"


def test_upgrade_and_downgrade_in_install_closure() -> None:
    d = diff_graphs(web_graph(), web_graph(requests="2.33.0", urllib3="1.26.19"))
    assert d.versions == (
        VersionChange("install", "requests", "2.32.3", "2.33.0"),
        VersionChange("install", "urllib3", "2.2.1", "1.26.19"),
    )
    assert [c.kind for c in d.versions] == ["upgraded", "downgraded"]
    assert d.hashes == ()


def test_versions_compare_as_versions_not_strings() -> None:
    d = diff_graphs(web_graph(requests="2.9.0"), web_graph(requests="2.10.0"))
    assert d.versions[0].kind == "upgraded"


def test_coexisting_versions_pair_with_their_nearest() -> None:
    assert pair_versions(["69", "70"], ["69", "71"]) == [("70", "71")]
    assert pair_versions(["60", "70"], ["71"]) == [("60", None), ("70", "71")]
    assert pair_versions(["60"], ["59", "75"]) == [(None, "59"), ("60", "75")]
    assert pair_versions(["1"], ["1"]) == []
    assert pair_versions([], ["1", "2"]) == [(None, "1"), (None, "2")]


def test_build_only_packages_are_their_own_scope() -> None:
    old = web_graph()
    nodes = dict(old.nodes)
    del nodes[NodeKey("setuptools==69.5.1")]
    nodes[NodeKey("setuptools==69.5.2")] = pkg("setuptools==69.5.2")
    nodes[NodeKey("hatchling==1.25.0")] = pkg(
        "hatchling==1.25.0", install=["packaging==24.1"], build=["setuptools==69.5.2"]
    )
    new = replace(old, nodes=nodes)
    d = diff_graphs(old, new)
    assert d.versions == (VersionChange("build", "setuptools", "69.5.1", "69.5.2"),)
    assert d.build_envs == (
        BuildEnvChange(
            NodeKey("hatchling==1.25.0"),
            added=(NodeKey("setuptools==69.5.2"),),
            removed=(NodeKey("setuptools==69.5.1"),),
        ),
    )
    text = render_text([d])
    assert "build   upgraded   setuptools 69.5.1 -> 69.5.2" in text
    assert "build-env  hatchling==1.25.0: +setuptools==69.5.2 -setuptools==69.5.1" in text


def test_a_build_tool_becoming_a_runtime_dependency_shows_in_both_scopes() -> None:
    old = web_graph()
    nodes = dict(old.nodes)
    nodes[NodeKey("idna==3.7")] = pkg(
        "idna==3.7", install=["flit-core==3.9.0"], build=["flit-core==3.9.0"]
    )
    d = diff_graphs(old, replace(old, nodes=nodes))
    assert VersionChange("install", "flit-core", None, "3.9.0") in d.versions
    assert VersionChange("build", "flit-core", "3.9.0", None) in d.versions


def test_same_version_different_hash_is_flagged() -> None:
    old = web_graph()
    nodes = dict(old.nodes)
    bad = FileRef("idna-3.7.tar.gz", "f" * 64)
    nodes[NodeKey("idna==3.7")] = replace(nodes[NodeKey("idna==3.7")], sdist=bad)
    d = diff_graphs(old, replace(old, nodes=nodes))
    assert d.versions == ()
    assert len(d.hashes) == 1
    assert d.hashes[0].key == "idna==3.7"
    assert d.hashes[0].new == bad
    assert "!! HASH CHANGED idna==3.7 sdist" in render_text([d])
    md = render_markdown([d])
    assert "[!CAUTION]" in md
    assert "f" * 64 in md


def test_added_and_removed_locks_and_requirements() -> None:
    small = graph(pkg("idna==3.7"), top=["idna==3.7"], variant="cuda")
    diffs = diff_locks({("web", "cuda"): small}, {("web", "cpu"): web_graph()})
    assert [(d.variant, d.status) for d in diffs] == [("cpu", "added"), ("cuda", "removed")]
    assert VersionChange("install", "requests", None, "2.32.3") in diffs[0].versions
    assert diffs[0].toplevel_added == ("idna", "requests>=2")
    assert diffs[1].versions == (VersionChange("install", "idna", "3.7", None),)


def test_markdown_has_a_section_and_table_per_lock() -> None:
    d = diff_graphs(web_graph(), web_graph(requests="2.33.0"))
    md = render_markdown([d])
    assert md.startswith("### `web` / `cpu`\n")
    assert "**installed packages**" in md
    assert "| upgraded | `requests` | 2.32.3 | 2.33.0 |" in md
    assert "build-only" not in md


# --- affineur diff ----------------------------------------------------------------


def run(root: Path, *args: str) -> int:
    return main(["--root", str(root), "diff", *args])


def test_diff_head_against_work_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_project(tmp_path, [web_graph()])
    commit_all(tmp_path)
    assert run(tmp_path) == 0
    assert capsys.readouterr().out == ""
    write_lock(tmp_path, web_graph(requests="2.33.0"))
    assert run(tmp_path) == 1
    assert capsys.readouterr().out == ("web/cpu\n  install upgraded   requests 2.32.3 -> 2.33.0\n")


def test_diff_between_revisions_and_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The project is a subfolder of its repository: git paths must be taken relative to it.
    repo = tmp_path / "repo"
    proj = write_project(repo / "proj", [web_graph()])
    commit_all(repo)
    git(repo, "branch", "base")
    write_lock(proj, web_graph(urllib3="2.2.2"))
    commit_all(repo, "bump urllib3")
    assert run(proj, "base") == 1  # base against the work tree
    assert "urllib3 2.2.1 -> 2.2.2" in capsys.readouterr().out
    assert run(proj, "HEAD~1", "HEAD", "--format", "markdown") == 1
    assert "| upgraded | `urllib3` | 2.2.1 | 2.2.2 |" in capsys.readouterr().out
    assert run(proj, "HEAD", "HEAD") == 0
    other = write_project(tmp_path / "other", [web_graph()])
    assert run(proj, str(other), str(proj)) == 1
    assert "urllib3" in capsys.readouterr().out


def test_diff_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_project(tmp_path, [web_graph()])
    commit_all(tmp_path)
    assert run(tmp_path, "no-such-rev") == 2
    assert "neither a folder holding lock/ nor a git revision" in capsys.readouterr().err
    (tmp_path / "lock" / "web" / "cpu" / "graph.json").write_text("{")
    assert run(tmp_path) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_a_changed_target_is_shown_because_every_build_key_changes() -> None:
    from affineur.lock._diff import TargetChange

    old = web_graph()
    new = replace(old, target={**old.target, "python_version": "3.12", "os_name": "posix"})
    d = diff_graphs(old, new)
    assert d.changed and d.versions == () and d.build_envs == ()
    assert d.target == (
        TargetChange("os_name", None, "posix"),
        TargetChange("python_version", "3.11", "3.12"),
    )
    text = render_text([d])
    assert "  target     python_version: 3.11 -> 3.12\n" in text
    assert "  target     os_name: (none) -> posix\n" in text
    assert "| `python_version` | 3.11 | 3.12 |" in render_markdown([d])


def test_vendored_crates_that_move_or_change_checksum_are_shown() -> None:
    from affineur.graph import Crate, VendoredCrates

    old = web_graph()
    key = NodeKey("idna==3.7")

    def with_crates(*crates: Crate) -> Graph:
        nodes = dict(old.nodes)
        nodes[key] = replace(nodes[key], crates=VendoredCrates("a" * 64, crates))
        return replace(old, nodes=nodes)

    before = with_crates(Crate("tinyadd", "1.0.0", "b" * 64), Crate("libc", "0.2.1", "c" * 64))
    after = with_crates(Crate("tinyadd", "1.1.0", "d" * 64), Crate("libc", "0.2.1", "e" * 64))
    d = diff_graphs(before, after)
    assert d.changed and d.versions == () and d.hashes == ()
    (change,) = d.crates
    assert change.added == ("tinyadd 1.1.0",)
    assert change.removed == ("tinyadd 1.0.0",)
    assert change.rehashed == (("libc 0.2.1", "c" * 64, "e" * 64),)
    text = render_text([d])
    assert "!! CRATE HASH CHANGED idna==3.7 crate libc 0.2.1" in text
    assert "crates     idna==3.7: +tinyadd 1.1.0 -tinyadd 1.0.0" in text
    md = render_markdown([d])
    assert "[!CAUTION]" in md and "crate libc 0.2.1" in md
    assert "**vendored crates**" in md


def test_a_host_tool_the_hooks_found_otherwise_is_shown_beside_the_moved_build_env() -> None:
    from affineur.lock._diff import HostToolChange

    old = web_graph()
    key = NodeKey("urllib3==2.2.1")
    before = replace(old.nodes[key], host_tools=(("patchelf", "patchelf 0.17.2"),))
    after = replace(
        before,
        host_tools=(("patchelf", None),),
        build_env=(*before.build_env, NodeKey("setuptools==70.0.0")),
    )
    d = diff_graphs(
        replace(old, nodes={**old.nodes, key: before}),
        replace(old, nodes={**old.nodes, key: after}),
    )
    assert d.host_tools == (HostToolChange(key, "patchelf", "patchelf 0.17.2", None),)
    text = render_text([d])
    assert "  build-env  urllib3==2.2.1: +setuptools==70.0.0\n" in text
    assert (
        "  host-tool  urllib3==2.2.1: patchelf 'patchelf 0.17.2' -> absent "
        "(on the host that locked)"
    ) in text
    assert "| `urllib3==2.2.1` | patchelf | 'patchelf 0.17.2' | absent |" in render_markdown([d])
