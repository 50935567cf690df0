"""Sources from git repositories: a tag or commit with submodules, archived, hashed and locked.

The repositories are made here, on the local file system, so nothing reaches
the network. One of them keeps its Python project in a subdirectory (the
override's ``build_dir``) and a submodule inside the package: what the wheel
holds proves the submodule was checked out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from affineur.errors import AffineurError, error_text
from affineur.index import GitSource, is_local_repository, sha256_file
from affineur.lock import check_project
from affineur.lock._gitsource import git_versions
from tests.ecosystem import FakeProject
from tests.workspace import Workspace, make_workspace, ok

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_AUTHOR_DATE": "2024-01-02T03:04:05Z",
    "GIT_COMMITTER_DATE": "2024-01-02T03:04:05Z",
    "GIT_CONFIG_NOSYSTEM": "1",
}

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "protocol.file.allow=always", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=GIT_ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def make_repository(root: Path, version: str = "1.0", tag: str | None = "v1.0") -> Path:
    """A repository holding project ``gitpkg`` under python/, with a submodule in its package."""
    sub = root / "vendored-data"
    sub.mkdir(parents=True)
    git(sub, "init", "-q")
    (sub / "data.txt").write_text("from the submodule\n")
    git(sub, "add", ".")
    git(sub, "commit", "-q", "-m", "data")

    repo = root / "gitpkg"
    repo.mkdir()
    git(repo, "init", "-q")
    scm_version = "SETUPTOOLS_SCM_PRETEND_VERSION_FOR_GITPKG"
    FakeProject("gitpkg", version, read_env=(scm_version,)).write_source_tree(repo / "python")
    (repo / "README").write_text("the Python project lives in python/\n")
    (repo / "python" / "run.sh").write_text("#!/bin/sh\n")
    (repo / "python" / "run.sh").chmod(0o755)
    (repo / "python" / "run-link.sh").symlink_to("run.sh")
    git(repo, "submodule", "add", "-q", str(sub), "python/gitpkg/vendored")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "release")
    if tag:
        git(repo, "tag", tag)
    return repo


def test_two_clones_make_the_same_archive(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "repos")
    source = GitSource(canonicalize_name("gitpkg"), "1.0", str(repo), "v1.0")
    first_commit, first = source.checkout(tmp_path / "one")
    (tmp_path / "two").mkdir()
    os.utime(repo / "README", (0, 0))  # a work tree's own state must not matter
    second_commit, second = source.checkout(tmp_path / "two")
    assert first_commit == second_commit == git(repo, "rev-parse", "v1.0^{commit}")
    assert first.name == f"gitpkg-1.0-git-{first_commit[:12]}.tar"
    assert sha256_file(first) == sha256_file(second)
    with tarfile.open(first) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "gitpkg-1.0/python/gitpkg/vendored/data.txt" in members
    assert not any("/.git/" in n or n.endswith("/.git") for n in members)
    assert list(members) == sorted(members)
    assert members["gitpkg-1.0/python/run.sh"].mode == 0o755
    assert members["gitpkg-1.0/README"].mode == 0o644
    assert members["gitpkg-1.0/python/run-link.sh"].issym()
    assert members["gitpkg-1.0/python/run-link.sh"].linkname == "run.sh"
    assert {m.mtime for m in members.values()} == {1704164645}  # the commit's time
    assert {(m.uid, m.gid, m.uname) for m in members.values()} == {(0, 0, "")}
    # Pinned to the commit, the same bytes again (how the build stage re-creates it).
    pinned = GitSource(source.project, "1.0", str(repo), "v1.0", first_commit)
    (tmp_path / "three").mkdir()
    assert sha256_file(pinned.checkout(tmp_path / "three")[1]) == sha256_file(first)


@pytest.mark.slow
def test_git_source_with_submodule_and_build_dir_end_to_end(
    cold_workspace: Workspace, tmp_path: Path
) -> None:
    ws = cold_workspace
    repo = make_repository(tmp_path / "repos")
    commit = git(repo, "rev-parse", "v1.0^{commit}")
    ws.write(
        "overrides/gitpkg.yaml",
        f"git: {{url: {json.dumps(str(repo))}, ref: 'v${{version}}'}}\nbuild_dir: python\n",
    )
    ws.collection(["gitpkg==1.0"])
    ok(ws.doit("lock"))
    node = ws.nodes()["gitpkg==1.0"]
    assert node["git"] == {"url": str(repo), "ref": "v1.0", "commit": commit}
    archive = ws.root / "build" / "sdists" / node["sdist"]["filename"]
    assert archive.name == f"gitpkg-1.0-git-{commit[:12]}.tar"
    assert sha256_file(archive) == node["sdist"]["sha256"]

    # The build stage needs only the stored archive: the repository is gone.
    shutil.move(repo, tmp_path / "moved")
    ok(ws.doit())
    (wheel,) = (ws.root / "dist" / "demo" / "cpu" / "files").glob("gitpkg-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("gitpkg/vendored/data.txt") == b"from the submodule\n"
        # No .git in the archive: setuptools-scm is told the version instead.
        seen = json.loads(zf.read("gitpkg/_build_env.json"))["env"]
        assert seen == {"SETUPTOOLS_SCM_PRETEND_VERSION_FOR_GITPKG": "1.0"}
        sbom = zf.read("gitpkg-1.0.dist-info/sboms/affineur.cdx.json").decode()
    assert f"git+{repo}@{commit}" in sbom
    statement = json.loads(wheel.with_name(wheel.name + ".provenance.json").read_text())
    resolved = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert {"gitCommit": commit} in [r["digest"] for r in resolved]
    assert "ok" in ok(ws.cli("check")).stdout

    # A changed archive is caught by check, before any build trusts it.
    archive.chmod(0o644)
    with archive.open("ab") as f:
        f.write(b"\0" * 512)
    checked = ws.cli("check")
    assert checked.returncode != 0
    assert "not the sha256 of the downloaded file" in checked.stdout + checked.stderr

    # Missing from the store, it is made again from the locked commit and must match.
    archive.unlink()
    shutil.move(tmp_path / "moved", repo)
    ok(ws.doit("forget", "-a"))
    ok(ws.doit("download"))
    assert sha256_file(archive) == node["sdist"]["sha256"]


def test_a_ref_whose_project_has_another_version_is_refused(
    cold_workspace: Workspace, tmp_path: Path
) -> None:
    ws = cold_workspace
    repo = make_repository(tmp_path / "repos", version="1.0", tag="v2.0")
    ws.write(
        "overrides/gitpkg.yaml",
        f"git: {{url: {json.dumps(str(repo))}, ref: v2.0}}\nbuild_dir: python\n",
    )
    ws.collection(["gitpkg"])
    failed = ws.doit("lock")
    assert failed.returncode != 0
    out = failed.stdout + failed.stderr
    assert "says it is version 1.0, not 2.0" in out
    assert "Traceback" not in out
    assert not (ws.root / "lock" / "demo" / "cpu" / "graph.json").exists()


@pytest.mark.slow
def test_a_commit_ref_needs_a_pin_and_a_bad_ref_is_one_error(
    cold_workspace: Workspace, tmp_path: Path
) -> None:
    ws = cold_workspace
    repo = make_repository(tmp_path / "repos", tag=None)
    commit = git(repo, "rev-parse", "HEAD")
    override = f"git: {{url: {json.dumps(str(repo))}, ref: {commit}}}\nbuild_dir: python\n"
    ws.write("overrides/gitpkg.yaml", override)
    ws.collection(["gitpkg"])
    failed = ws.doit("lock")
    assert failed.returncode != 0
    assert "names no version" in failed.stdout + failed.stderr
    assert "hint: pin it in the collection" in failed.stdout + failed.stderr

    ws.collection(["gitpkg==1.0"])
    ok(ws.doit("lock"))
    assert ws.nodes()["gitpkg==1.0"]["git"]["commit"] == commit

    ws.write("overrides/gitpkg.yaml", override.replace(commit, "no-such-tag"))
    failed = ws.doit("lock")
    assert failed.returncode != 0
    out = failed.stdout + failed.stderr
    assert "no tag, branch or commit 'no-such-tag'" in out
    assert "Traceback" not in out


def test_git_and_download_source_together_is_a_config_error(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "checkout", None)
    ws.write("variants/cpu.yaml", "description: cpu\n")
    ws.write(
        "overrides/gitpkg.yaml",
        "git: {url: /nowhere, ref: v1}\ndownload_source: 'https://example.invalid/x.tar.gz'\n",
    )
    ws.collection(["gitpkg==1.0"])
    report = check_project(ws.root)
    assert any("'git' and 'download_source' both say where" in p for p in report.problems())
    ws.write("overrides/gitpkg.yaml", "git: {url: ../gitpkg, ref: v1}\n")
    report = check_project(ws.root)
    assert any("git url '../gitpkg' is a relative path" in p for p in report.problems())


@pytest.mark.parametrize(
    ("ref", "pins", "expected"),
    [
        ("v1.2.0", None, ["1.2.0"]),
        ("release-2.1", None, ["2.1"]),
        ("refs/tags/gitpkg-3.0rc1", None, ["3.0rc1"]),
        ("v${version}", ["1.0", "1.1"], ["1.0", "1.1"]),
        ("0123456789abcdef0123456789abcdef01234567", ["1.0"], ["1.0"]),
        ("main", ["2.0"], ["2.0"]),
    ],
)
def test_the_version_comes_from_the_ref_or_the_pin(
    ref: str, pins: list[str] | None, expected: list[str]
) -> None:
    found = git_versions(
        canonicalize_name("gitpkg"),
        {"url": "/x", "ref": ref},
        [Version(p) for p in pins] if pins is not None else None,
    )
    assert found == [Version(v) for v in expected]


def test_credentials_in_a_repository_url_never_reach_an_error(tmp_path: Path) -> None:
    url = "https://builder:s3cret-token@127.0.0.1:9/team/gitpkg.git"
    source = GitSource(canonicalize_name("gitpkg"), "1.0", url, "v1.0")
    with pytest.raises(AffineurError) as caught:
        source.checkout(tmp_path)
    shown = error_text(caught.value)
    assert "s3cret-token" not in shown
    assert "https://127.0.0.1:9/team/gitpkg.git" in shown
    assert not is_local_repository(url)
    assert is_local_repository(str(tmp_path)) and is_local_repository(tmp_path.as_uri())
    assert not is_local_repository("git@example.invalid:team/gitpkg.git")
