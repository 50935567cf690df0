"""Bad input through `doit` and `affineur`: one clear error, a non-zero exit, never a traceback,
and nothing left half-written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from tests.ecosystem import BuiltRelease, FakeIndex, FakeProject
from tests.workspace import Workspace, copy_discovery_caches, make_workspace, ok

# The module's tests share what its module fixtures build: one worker builds it, once.
pytestmark = pytest.mark.xdist_group("bad-input")


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
    graph = workspace.write("lock/demo/cpu/graph.json", '{"nodes": ')
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
    result = workspace.cli("lock")
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


# --- the hostile-input table ----------------------------------------------------------------
#
# Each case damages a checkout that has been locked, built and published, runs the command a
# user would, and must get its exact error line, a non-zero exit, no traceback, and the lock,
# the build cache and the published index exactly as they were.

BILLION_LAUGHS = "description: lol\nenv:\n  A: x\n" + "".join(
    f"x{i}: &x{i} [{', '.join([f'*x{i - 1}' if i else '1'] * 9)}]\n" for i in range(10)
)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _symlink_to(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def _edit_lock(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        data = json.loads(path.read_text())
        change(data["nodes"])
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    return edit


def _set(node: str, *path_and_value: Any) -> Callable[[dict[str, Any]], None]:
    *path, value = path_and_value

    def change(nodes: dict[str, Any]) -> None:
        target = nodes[node]
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return change


def _rename_node(old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def change(nodes: dict[str, Any]) -> None:
        nodes[new] = nodes.pop(old)

    return change


def _borrow_sdist(node: str, donor: str) -> Callable[[dict[str, Any]], None]:
    def change(nodes: dict[str, Any]) -> None:
        nodes[node]["sdist"] = dict(nodes[donor]["sdist"])

    return change


def _drop_build_env(node: str) -> Callable[[dict[str, Any]], None]:
    def change(nodes: dict[str, Any]) -> None:
        nodes[node]["build_env"] = []

    return change


def _retarget_edge(node: str, req: str) -> Callable[[dict[str, Any]], None]:
    def change(nodes: dict[str, Any]) -> None:
        nodes[node]["edges"][0]["req"] = req

    return change


LOCK = "lock/demo/cpu/graph.json"


@dataclass(frozen=True)
class Hostile:
    id: str
    files: Mapping[str, str | Callable[[Path], None]]
    command: tuple[str, ...]
    error: str
    """A substring of the ``error:`` line (or of a cause under it) the command must print."""
    env: Mapping[str, str] = field(default_factory=dict)
    seconds: float | None = None
    """When set, the command must fail within this time (input that costs time or memory)."""


CASES = [
    Hostile(
        "yaml-billion-laughs",
        {"variants/cpu.yaml": BILLION_LAUGHS},
        ("check",),
        "variants/cpu.yaml:9: YAML aliases expand this document to more than 100000 values",
        seconds=1,
    ),
    Hostile(
        "yaml-billion-laughs-doit",
        {"overrides/lib-fast.yaml": BILLION_LAUGHS.replace("description: lol\n", "")},
        ("doit",),
        "YAML aliases expand this document to more than 100000 values; refused",
        seconds=20,
    ),
    Hostile(
        "yaml-recursive-alias",
        {"overrides/lib-fast.yaml": "env: &e {A: x}\nconstraints: &c [*c]\n"},
        ("check",),
        "overrides/lib-fast.yaml:2: a YAML alias refers to a value that contains it",
    ),
    Hostile(
        "config-file-too-big",
        {"overrides/lib-fast.yaml": "# padding\n" * 300_000},
        ("check",),
        "overrides/lib-fast.yaml: the file is 3000000 bytes; config files are limited to",
    ),
    Hostile(
        "yaml-nested-past-the-stack",
        {"variants/cpu.yaml": "description: deep\nenv: " + "[" * 100_000 + "\n"},
        ("check",),
        "variants/cpu.yaml: nested more than 64 levels deep; refused",
        seconds=2,
    ),
    Hostile(
        "yaml-nested-deeper-than-any-config",
        {"overrides/lib-fast.yaml": "env: " + "{a: " * 100 + "x" + "}" * 100 + "\n"},
        ("check",),
        "overrides/lib-fast.yaml: nested more than 64 levels deep; refused",
    ),
    Hostile(
        "toml-nested-past-the-stack",
        {"collections/demo.toml": "requirements = " + "[" * 100_000 + "\n"},
        ("check",),
        "collections/demo.toml: nested more than 64 levels deep; refused",
        seconds=2,
    ),
    Hostile(
        "lock-nested-past-the-stack",
        {LOCK: "[" * 100_000 + "]" * 100_000},
        ("check",),
        "graph.json: nested more than 64 levels deep; refused",
        seconds=2,
    ),
    Hostile(
        "sdist-pyproject-nested-past-the-stack",
        {"collections/demo.toml": "COLLECTION:deep-pyproject"},
        ("doit",),
        "pyproject.toml: deep-pyproject==1.0: nested more than 64 levels deep; refused",
    ),
    Hostile(
        "a-nan-limit-would-switch-the-bomb-check-off",
        {"overrides/lib-fast.yaml": "max_compression_ratio: .nan\n"},
        ("check",),
        "overrides/lib-fast.yaml:1: max_compression_ratio: expected a finite number, got nan",
    ),
    Hostile(
        "an-infinite-timeout",
        {"variants/cpu.yaml": "VARIANT\ntimeout: .inf\n"},
        ("check",),
        "variants/cpu.yaml:3: timeout: expected a finite number, got inf",
    ),
    Hostile(
        "env-name-no-process-can-take",
        {"overrides/lib-fast.yaml": "env: {'A=B': x}\n"},
        ("check",),
        "overrides/lib-fast.yaml:1: env: expected a string matching ^[A-Za-z_][A-Za-z0-9_]*$, "
        "got the string 'A=B'",
    ),
    Hostile(
        "env-value-with-a-nul",
        {"overrides/lib-fast.yaml": 'env: {A: "a\\0b"}\n'},
        ("doit",),
        "env.A: expected a string matching",
    ),
    Hostile(
        "pass-env-names-a-secret",
        {"variants/cpu.yaml": "VARIANT\npass_env: [GITHUB_TOKEN]\n"},
        ("check",),
        "variants/cpu.yaml:3: pass_env.0: 'GITHUB_TOKEN' looks like a secret; builds never see",
    ),
    Hostile(
        "pass-env-pattern-admits-secrets",
        {"overrides/lib-fast.yaml": "pass_env: ['AWS_SECRET*']\n"},
        ("check",),
        "pass_env.0: 'AWS_SECRET*' looks like a secret",
    ),
    Hostile(
        "secret-expanded-in-override-env",
        {"overrides/lib-fast.yaml": "env:\n  AWS: '${AWS_SECRET_ACCESS_KEY}'\n"},
        ("doit",),
        "lib-fast==1.0: env.AWS uses ${AWS_SECRET_ACCESS_KEY}, which is not passed to builds: "
        "its name looks like a secret",
        env={"AWS_SECRET_ACCESS_KEY": "s3cr3t"},
    ),
    Hostile(
        "unlisted-variable-expanded-in-override-env",
        {"overrides/lib-fast.yaml": "env:\n  OPT: '${MY_TOOL_HOME}/bin'\n"},
        ("doit",),
        "builds see only the built-in list and the variant's pass_env",
        env={"MY_TOOL_HOME": "/opt/tool"},
    ),
    Hostile(
        "dangling-patch-link",
        {"overrides/patches/lib-fast/0001-fix.patch": _symlink_to("/nonexistent/fix.patch")},
        ("check",),
        "overrides/patches/lib-fast/0001-fix.patch: is a symbolic link, not a regular file",
    ),
    Hostile(
        "patch-is-a-fifo",
        {"overrides/patches/lib-fast/0001-fix.patch": _fifo},
        ("check",),
        "overrides/patches/lib-fast/0001-fix.patch: is not a regular file",
        seconds=5,
    ),
    Hostile(
        "lock-is-a-fifo",
        {LOCK: lambda path: (path.unlink(), os.mkfifo(path))},
        ("check",),
        "lock/demo/cpu/graph.json: is not a regular file",
        seconds=5,
    ),
    Hostile(
        "lock-links-to-an-endless-device",
        {LOCK: lambda path: (path.unlink(), path.symlink_to("/dev/zero"))},
        ("check",),
        "lock/demo/cpu/graph.json: is not a regular file",
        seconds=5,
    ),
    Hostile(
        "lock-is-a-fifo-doit",
        {LOCK: lambda path: (path.unlink(), os.mkfifo(path))},
        ("doit",),
        "lock/demo/cpu/graph.json: is not a regular file",
        seconds=60,
    ),
    Hostile(
        "lock-sha256-not-hex",
        {LOCK: _edit_lock(_set("lib-fast==1.0", "sdist", "sha256", "Z" * 64))},
        ("check",),
        "nodes.lib-fast==1.0.sdist.sha256: expected a string matching ^[0-9a-f]{64}$",
    ),
    Hostile(
        "lock-sdist-name-escapes",
        {LOCK: _edit_lock(_set("lib-fast==1.0", "sdist", "filename", "../../../etc/passwd"))},
        ("check",),
        "lib-fast==1.0: its sdist name '../../../etc/passwd' is not a plain file name",
    ),
    Hostile(
        "lock-sdist-of-another-package",
        {LOCK: _edit_lock(_borrow_sdist("lib-fast==1.0", "meta-dep==1.0"))},
        ("check",),
        "lib-fast==1.0: its sdist meta_dep-1.0.tar.gz is a file of meta-dep 1.0",
    ),
    Hostile(
        "lock-sha256-edited",
        {LOCK: _edit_lock(_set("lib-fast==1.0", "sdist", "sha256", "0" * 64))},
        ("check",),
        "lib-fast==1.0: the sha256 the lock records for lib_fast-1.0.tar.gz is not the sha256 "
        "of the downloaded file",
    ),
    Hostile(
        "lock-bad-node-key",
        {LOCK: _edit_lock(_rename_node("lib-fast==1.0", "Lib_Fast==1.0"))},
        ("check",),
        "nodes.Lib_Fast==1.0: key 'Lib_Fast==1.0' does not match",
    ),
    Hostile(
        "lock-build-env-incomplete",
        {LOCK: _edit_lock(_drop_build_env("lib-c==1.0"))},
        ("check",),
        "lib-c==1.0: its build_env lacks its build requirements fakebuild-core==1.0",
    ),
    Hostile(
        "lock-edge-points-elsewhere",
        {LOCK: _edit_lock(_retarget_edge("lib-c==1.0", "setuptools>=40"))},
        ("check",),
        "lib-c==1.0: the requirement 'setuptools>=40' points at fakebuild-core==1.0",
    ),
    Hostile(
        "lock-sdist-of-another-package-doit",
        {LOCK: _edit_lock(_borrow_sdist("lib-fast==1.0", "meta-dep==1.0"))},
        ("doit", "build"),
        "the built wheel meta_dep-1.0-py3-none-any.whl is not what the lock says",
    ),
    Hostile(
        "sdist-decompression-bomb",
        {"collections/demo.toml": "COLLECTION:bomb"},
        ("doit",),
        "bomb-1.0.tar.gz: unpacks to more than",
        seconds=60,
    ),
    Hostile(
        "sandbox-kind-unknown",
        {"variants/cpu.yaml": "VARIANT\nsandbox: {kind: chroot}\n"},
        ("check",),
        "variants/cpu.yaml:3: sandbox.kind: expected one of 'auto', 'bubblewrap', 'unshare', "
        "'none', got the string 'chroot'",
    ),
    Hostile(
        "sandbox-relative-path",
        {"variants/cpu.yaml": "VARIANT\nsandbox: {read_only: [opt/tool]}\n"},
        ("check",),
        "variants/cpu.yaml:3: sandbox.read_only.0: expected a string matching ^/",
    ),
    Hostile(
        "publish-with-a-broken-signing-key",
        {"signing.pem": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"},
        ("doit",),
        "not an unencrypted PEM private key",
        env={"AFFINEUR_SIGNING_KEY": "signing.pem"},
    ),
    Hostile(
        "patch-link-doit",
        {"overrides/patches/lib-fast/0001-fix.patch": _symlink_to("/etc/hostname")},
        ("doit",),
        "is a symbolic link, not a regular file",
    ),
]


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file of the lock, the build cache and the index: content hash and mode."""
    found = {}
    for top in ("lock", "build/cache", "dist"):
        for path in sorted((root / top).rglob("*")):
            # .verified only remembers a verification (it changes with the inode).
            if path.is_file() and not path.is_symlink() and path.name != ".verified":
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[path.relative_to(root).as_posix()] = (digest, path.stat().st_mode)
    return found


@pytest.fixture(scope="module")
def hostile_index(fake_catalog_releases: list[BuiltRelease]) -> Iterator[FakeIndex]:
    with FakeIndex() as index:
        index.add(*fake_catalog_releases)
        # 40 MB of zeros: a 40 KB sdist, far past the default compression ratio.
        index.add(FakeProject("bomb", "1.0", extra_files={"bomb/zeros.txt": "\0" * (40 << 20)}))
        # Nested past any limit, yet within what this test's own TOML parser survives.
        deep = FakeProject("deep-pyproject", "1.0")
        text = deep.pyproject_toml() + "\n[tool.deep]\nx = " + "[" * 150 + "]" * 150 + "\n"
        index.add(replace(deep, extra_files={"pyproject.toml": text}))
        yield index


@pytest.fixture(scope="module")
def built_checkout(
    tmp_path_factory: pytest.TempPathFactory, hostile_index: FakeIndex, catalog_checkout: Path
) -> Path:
    """A checkout that locked, built and published lib-fast: the state hostile input must keep."""
    ws = make_workspace(tmp_path_factory.mktemp("hostile") / "checkout", hostile_index)
    copy_discovery_caches(catalog_checkout, ws.root)
    ws.collection(["lib-fast", "lib-c", "meta-dep"])
    ok(ws.doit())
    assert _snapshot(ws.root), "nothing was built"
    from affineur.cli import main

    # Also loads and compiles every schema once, so the cases time their command only.
    assert main(["--root", str(ws.root), "check"]) == 0
    return ws.root


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_gets_its_error_and_changes_nothing(
    case: Hostile,
    built_checkout: Path,
    hostile_index: FakeIndex,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "checkout"
    shutil.copytree(built_checkout, root, symlinks=True)
    ws = Workspace(root, hostile_index)
    variant = (root / "variants/cpu.yaml").read_text()
    for relative, content in case.files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif content.startswith("COLLECTION:"):
            ws.collection(["lib-fast", "lib-c", "meta-dep", *content.split(":")[1].split(",")])
        else:
            path.write_text(content.replace("VARIANT\n", variant))
    from affineur.cli import main

    before = _snapshot(root)
    started = time.monotonic()
    if case.command[0] == "check":
        code = main(["--root", str(root), *case.command])
        captured = capsys.readouterr()
        out, err = captured.out, captured.err
    else:
        result = ws.doit(*case.command[1:], env=dict(case.env))
        code, out, err = result.returncode, result.stdout, result.stderr
    took = time.monotonic() - started
    assert code != 0, out + err
    no_traceback(out, err)
    assert case.error in out + err, out + err
    if case.command[0] == "check":
        # One error per real problem: the check lists exactly one.
        assert "error: 1 problem(s)" in err, err
    if case.seconds is not None:
        assert took < case.seconds
    assert _snapshot(root) == before
    if case.command[0] == "doit":
        summary = json.loads((root / "build/reports/summary.json").read_text())
        assert summary["status"] == "failed" and summary["failures"] >= 1
        md = (root / "build/reports/summary.md").read_text()
        assert md.startswith("### affineur build: failed")


def test_a_damaged_discovery_cache_costs_a_hook_run_not_the_lock(
    cold_workspace: Workspace,
) -> None:
    workspace = cold_workspace  # its discovery cache holds only what this lock asked
    workspace.collection(["lib-c"])
    ok(workspace.doit("lock"))
    # lib-c's build tool has no wheel on the index: pip built one for discovery (the
    # session's catalog lock is given these wheels, so this is where pip's turn is tested).
    assert list((workspace.root / "build/upstream-wheels/built").glob("*/fakebuild-core-1.0/*.whl"))
    lock = (workspace.root / "lock/demo/cpu/graph.json").read_bytes()
    answers = sorted((workspace.root / "build/discovery/hooks").glob("*.json"))
    assert answers
    damage = ['{"wheel": [', "[1, 2]", '{"wheel": [1], "sdist": []}', "[" * 100_000]
    for number, path in enumerate(answers):
        path.write_text(damage[number % len(damage)])
    result = ok(workspace.cli("lock", "--force"))
    no_traceback(result.stdout, result.stderr)
    assert (workspace.root / "lock/demo/cpu/graph.json").read_bytes() == lock
    # Asked again, and remembered properly this time.
    assert all(json.loads(p.read_text())["wheel"] is not None for p in answers)
