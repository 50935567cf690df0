"""What a build backend can reach: the filtered environment and the network namespace."""

from __future__ import annotations

import json
import os
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from affineur.errors import AffineurError
from affineur.pep517 import (
    BuildEnvironment,
    HookCaller,
    build_environment_variables,
    hook_environment,
    isolate_command,
    network_isolation_available,
    read_build_system,
)
from affineur.pep517 import _isolation as isolation
from tests.ecosystem import FakeProject
from tests.test_hooks import make_project
from tests.workspace import Workspace, ok

SECRET = "s3cr3t-value-that-must-not-leak"

PARENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "CFLAGS": "-O2",
    "CMAKE_GENERATOR": "Ninja",
    "CARGO_HOME": "/opt/cargo",
    "GITHUB_TOKEN": SECRET,
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "CI_JOB_PASSWORD": SECRET,
    "CMAKE_AUTH_TOKEN": SECRET,
    "DEPLOY_KEY": SECRET,
    "NETRC": "/home/me/.netrc",
    "PIP_INDEX_URL": f"https://user:{SECRET}@mirror.invalid/simple",
    "HTTPS_PROXY": f"http://user:{SECRET}@proxy.invalid:3128",
    "http_proxy": "http://proxy.invalid:3128",
    "no_proxy": "localhost",
    "SSH_AUTH_SOCK": "/tmp/agent.sock",
    "UNKNOWN_TOOL_SETTING": "dropped",
    "HOME": "/home/me",
    "SOURCE_DATE_EPOCH": "1",
}


def variables(tmp_path: Path, **extra: str) -> dict[str, str]:
    return build_environment_variables(
        base=PARENT,
        extra=extra,
        source_date_epoch=1700000000,
        home=tmp_path / "home",
        tmpdir=tmp_path / "tmp",
    )


def test_allowlist_keeps_build_settings_and_drops_the_rest(tmp_path: Path) -> None:
    env = variables(tmp_path)
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "CFLAGS": "-O2",
        "CMAKE_GENERATOR": "Ninja",
        "CARGO_HOME": "/opt/cargo",
        "http_proxy": "http://proxy.invalid:3128",
        "no_proxy": "localhost",
        "SOURCE_DATE_EPOCH": "1700000000",
        "HOME": str(tmp_path / "home"),
        "TMPDIR": str(tmp_path / "tmp"),
        "PYTHONHASHSEED": "0",
        "PYTHONNOUSERSITE": "1",
        "PIP_NO_INDEX": "1",
        "PIP_CONFIG_FILE": os.devnull,
    }


def test_configured_env_goes_on_top_but_not_over_the_sealing_layer(tmp_path: Path) -> None:
    env = variables(tmp_path, CFLAGS="-O3", MY_FLAG="1", HOME="/elsewhere", PIP_NO_INDEX="0")
    assert env["CFLAGS"] == "-O3"
    assert env["MY_FLAG"] == "1"
    assert env["HOME"] == str(tmp_path / "home")
    assert env["PIP_NO_INDEX"] == "1"


def test_isolate_command_prefixes_only_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "_isolation_prefix", lambda: ("/bin/unshare", "--net"))
    assert isolate_command(["python", "x"], network=True) == ["python", "x"]
    assert isolate_command(["python", "x"], network=False) == [
        "/bin/unshare",
        "--net",
        "python",
        "x",
    ]


def test_isolation_unavailable_is_an_error_with_the_way_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(isolation, "_isolation_prefix", lambda: None)
    assert isolate_command(["python"], network=True) == ["python"]
    with pytest.raises(AffineurError) as info:
        isolate_command(["python"], network=False)
    assert info.value.stage == "isolation"
    assert "network_isolation: false" in (info.value.hint or "")


def test_probe_without_unshare_reports_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    isolation._isolation_prefix.cache_clear()
    monkeypatch.setattr(isolation.shutil, "which", lambda name: None)
    try:
        assert network_isolation_available() is False
    finally:
        isolation._isolation_prefix.cache_clear()


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> BuildEnvironment:
    return BuildEnvironment.create(tmp_path_factory.mktemp("venv") / "env")


def caller(project: Path, venv: BuildEnvironment, env: dict[str, str], network: bool) -> HookCaller:
    return HookCaller(
        project,
        read_build_system(project),
        python=str(venv.python),
        env=env,
        log=project.parent / "build.log",
        network=network,
        timeout=60,
    )


def test_secrets_in_the_parent_never_reach_a_backend(
    tmp_path: Path, venv: BuildEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Also in this process's own environment: the hook must not inherit it.
    monkeypatch.setenv("AFFINEUR_TEST_TOKEN", SECRET)
    (tmp_path / "home").mkdir()
    (tmp_path / "tmp").mkdir()
    env = variables(tmp_path)
    env["PATH"] = os.environ["PATH"]
    project = make_project(tmp_path / "p")
    wheel = caller(project, venv, env, network=True).build_wheel(tmp_path / "out")
    with zipfile.ZipFile(wheel) as archive:
        seen = json.loads(archive.read("toy/env.json"))
    assert not [name for name, value in seen.items() if SECRET in value]
    assert "AFFINEUR_TEST_TOKEN" not in seen and "GITHUB_TOKEN" not in seen
    assert seen["HOME"] == str(tmp_path / "home")
    assert seen["SOURCE_DATE_EPOCH"] == "1700000000"
    assert seen["PIP_NO_INDEX"] == "1"
    assert seen["CFLAGS"] == "-O2"
    assert SECRET not in (tmp_path / "build.log").read_text()


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(5)
        yield server.getsockname()[1]


needs_isolation = pytest.mark.skipif(
    not network_isolation_available(), reason="unshare --net does not work here"
)


@needs_isolation
def test_isolated_backend_cannot_connect(
    tmp_path: Path, venv: BuildEnvironment, listening_port: int
) -> None:
    project = make_project(tmp_path / "p", action="connect", port=listening_port)
    env = {"PATH": os.environ["PATH"]}
    with pytest.raises(AffineurError) as info:
        caller(project, venv, env, network=False).build_wheel(tmp_path / "out")
    assert info.value.stage == "build"
    # Not even loopback is up in the new namespace.
    assert info.value.causes[-1] == "OSError: [Errno 101] Network is unreachable"


@needs_isolation
def test_backend_with_network_can_connect(
    tmp_path: Path, venv: BuildEnvironment, listening_port: int
) -> None:
    project = make_project(tmp_path / "p", action="connect", port=listening_port)
    env = {"PATH": os.environ["PATH"]}
    wheel = caller(project, venv, env, network=True).build_wheel(tmp_path / "out")
    assert wheel.is_file()
    assert "connected" in (tmp_path / "build.log").read_text()


@needs_isolation
def test_isolated_hooks_still_work(tmp_path: Path, venv: BuildEnvironment) -> None:
    project = make_project(tmp_path / "p", requires_wheel=["cython"])
    hooks = caller(project, venv, {"PATH": os.environ["PATH"]}, network=False)
    assert hooks.get_requires_for_build_wheel() == ["cython"]
    assert hooks.build_wheel(tmp_path / "out").is_file()


def test_a_pattern_never_admits_a_secret_looking_name(tmp_path: Path) -> None:
    parent = {"CMAKE_CREDS": SECRET, "CMAKE_APIKEY": SECRET, "CMAKE_BUILD_TYPE": "Release"}
    env = build_environment_variables(
        base=parent, extra={}, source_date_epoch=1, home=tmp_path, tmpdir=tmp_path
    )
    assert env["CMAKE_BUILD_TYPE"] == "Release"
    assert SECRET not in json.dumps(env)


def test_pass_env_admits_names_and_prefixes_but_never_secrets(tmp_path: Path) -> None:
    parent = {"MY_TOOL_HOME": "/opt/t", "ACME_A": "1", "ACME_TOKEN": SECRET, "OTHER": "x"}
    env = build_environment_variables(
        base=parent,
        extra={},
        source_date_epoch=1,
        home=tmp_path,
        tmpdir=tmp_path,
        pass_env=("MY_TOOL_HOME", "ACME_*"),
    )
    assert env["MY_TOOL_HOME"] == "/opt/t" and env["ACME_A"] == "1"
    assert "ACME_TOKEN" not in env and "OTHER" not in env


def test_env_templates_expand_only_passed_variables(tmp_path: Path) -> None:
    def expand(template: str, pass_env: tuple[str, ...] = ()) -> dict[str, str]:
        return hook_environment(
            base={"AWS_SECRET_ACCESS_KEY": SECRET, "MY_TOOL_HOME": "/opt/t", "CC": "gcc"},
            package_env={"X": template},
            name="demo",
            version="1.0",
            source_date_epoch=1,
            home=tmp_path,
            tmpdir=tmp_path,
            pass_env=pass_env,
        )

    assert expand("${CC} -O2")["X"] == "gcc -O2"
    assert expand("${MY_TOOL_HOME}/bin", ("MY_TOOL_HOME",))["X"] == "/opt/t/bin"
    with pytest.raises(AffineurError, match="not passed to builds") as info:
        expand("${MY_TOOL_HOME}/bin")
    assert info.value.hint == "add MY_TOOL_HOME to 'pass_env' in the variant"
    with pytest.raises(AffineurError, match="looks like a secret"):
        expand("${AWS_SECRET_ACCESS_KEY}", ("AWS_*",))


def test_through_doit_a_build_sees_only_the_allow_list_and_what_the_variant_passes(
    workspace: Workspace,
) -> None:
    seen = ("CMAKE_BUILD_TYPE", "CMAKE_CREDS", "MY_TOOL_HOME", "MY_TOOL_TOKEN", "OPT", "ELSE")
    assert workspace.index is not None
    workspace.index.add(FakeProject("env-probe", "1.0", read_env=seen))
    workspace.variant(extra="pass_env: [MY_*]\n")
    workspace.write("overrides/env-probe.yaml", "env:\n  OPT: '${MY_TOOL_HOME}/bin'\n")
    workspace.collection(["env-probe"])
    parent = {
        "CMAKE_BUILD_TYPE": "Release",
        "CMAKE_CREDS": SECRET,  # admitted by CMAKE_*, refused by its name
        "MY_TOOL_HOME": "/opt/tool",
        "MY_TOOL_TOKEN": SECRET,  # admitted by the variant's MY_*, refused by its name
        "ELSE": "not on any list",
    }
    ok(workspace.doit(env=parent))
    (wheel,) = (workspace.root / "dist/demo/cpu/files").glob("env_probe-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        env = json.loads(archive.read("env_probe/_build_env.json"))["env"]
    assert env == {
        "CMAKE_BUILD_TYPE": "Release",
        "CMAKE_CREDS": None,
        "MY_TOOL_HOME": "/opt/tool",
        "MY_TOOL_TOKEN": None,
        "OPT": "/opt/tool/bin",
        "ELSE": None,
    }
    logs = [p.read_text() for p in (workspace.root / "build").rglob("*.log")]
    assert logs and not [text for text in logs if SECRET in text]
