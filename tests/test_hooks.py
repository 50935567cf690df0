"""PEP 517 hook calls against tiny in-tree backends, run in real build venvs."""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from installer.sources import WheelFile

from affineur.errors import AffineurError
from affineur.pep517 import (
    LEGACY_BUILD_SYSTEM,
    BuildEnvironment,
    BuildSystem,
    Confinement,
    HookCaller,
    read_build_system,
    run_hook_process,
)

# One configurable toy backend: each test writes toy.json to choose what it
# does. Standard library only, so a pip-less venv can run it.
TOY_BACKEND = """
import base64, hashlib, json, os, socket, subprocess, sys, time, zipfile

CONF = json.load(open("toy.json"))


def _note_pid():
    if CONF.get("pids"):
        with open(CONF["pids"], "a") as f:
            f.write(f"{os.getpid()}\\n")


def get_requires_for_build_wheel(config_settings=None):
    _note_pid()
    if CONF.get("say"):
        print(CONF["say"])
    extra = [f"from-settings=={config_settings['pin']}"] if config_settings else []
    return CONF.get("requires_wheel", []) + extra


def get_requires_for_build_sdist(config_settings=None):
    if CONF.get("fail_requires"):
        print("requires are broken")
        sys.exit(3)
    return CONF.get("requires_sdist", [])


if CONF.get("prepare"):
    def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
        dist_info = os.path.join(metadata_directory, "toy-1.0.dist-info")
        os.makedirs(dist_info)
        with open(os.path.join(dist_info, "METADATA"), "w") as f:
            f.write("Metadata-Version: 2.1\\nName: toy\\nVersion: 1.0\\n")
        return "toy-1.0.dist-info"


def _hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _note_pid()
    action = CONF.get("action")
    if action == "fail":
        for i in range(50):
            print(f"compiler line {i}")
        raise RuntimeError("the toy build broke")
    if action == "sleep":
        print("sleeping", flush=True)
        child = subprocess.Popen(["sleep", "60"])
        with open(CONF["pidfile"], "w") as f:
            f.write(str(child.pid))
        time.sleep(60)
    if action == "connect":
        socket.create_connection(("127.0.0.1", CONF["port"]), timeout=5).close()
        print("connected")
    members = {
        "toy/__init__.py": b"",
        "toy/env.json": json.dumps(dict(os.environ)).encode(),
        "toy-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\\nName: toy\\nVersion: 1.0\\n",
        "toy-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\n"
        b"Tag: py3-none-any\\n",
    }
    record = "".join(f"{p},{_hash(d)},{len(d)}\\n" for p, d in members.items())
    members["toy-1.0.dist-info/RECORD"] = (record + "toy-1.0.dist-info/RECORD,,\\n").encode()
    name = "toy-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as archive:
        for path, data in members.items():
            archive.writestr(path, data)
    return name
"""

PYPROJECT = """
[build-system]
requires = []
build-backend = "toybackend"
backend-path = ["backend"]
"""


def make_project(directory: Path, **conf: Any) -> Path:
    """A source tree whose in-tree backend behaves as ``conf`` says."""
    directory.mkdir(parents=True)
    (directory / "pyproject.toml").write_text(PYPROJECT)
    (directory / "backend").mkdir()
    (directory / "backend" / "toybackend.py").write_text(TOY_BACKEND)
    (directory / "toy.json").write_text(json.dumps(conf))
    return directory


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> BuildEnvironment:
    return BuildEnvironment.create(tmp_path_factory.mktemp("venv") / "env")


def caller(
    project: Path,
    venv: BuildEnvironment,
    *,
    env: Mapping[str, str] | None = None,
    network: bool = True,
    timeout: float | None = 60,
    **kwargs: Any,
) -> HookCaller:
    return HookCaller(
        project,
        read_build_system(project),
        python=str(venv.python),
        env=env if env is not None else {"PATH": os.environ["PATH"]},
        log=project.parent / "logs" / "build.log",
        network=network,
        timeout=timeout,
        **kwargs,
    )


# --- read_build_system --------------------------------------------------------


def test_no_pyproject_means_the_legacy_setuptools_backend(tmp_path: Path) -> None:
    assert read_build_system(tmp_path) == LEGACY_BUILD_SYSTEM
    assert LEGACY_BUILD_SYSTEM.build_backend == "setuptools.build_meta:__legacy__"


def test_no_build_system_table_means_the_legacy_backend(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert read_build_system(tmp_path) == LEGACY_BUILD_SYSTEM


def test_requires_without_backend_keeps_the_requires(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64", "cython"]\n'
    )
    assert read_build_system(tmp_path) == BuildSystem(
        requires=("setuptools>=64", "cython"),
        build_backend="setuptools.build_meta:__legacy__",
    )


def test_full_table(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    assert read_build_system(project) == BuildSystem((), "toybackend", ("backend",))


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ("[build-system\n", ()),
        ('build-system = "x"\n', ("build-system",)),
        ("[build-system]\nbuild-backend = 'x'\n", ("build-system", "requires")),
        ("[build-system]\nrequires = 'setuptools'\n", ("build-system", "requires")),
        ("[build-system]\nrequires = ['not a req !']\n", ("build-system", "requires")),
        ("[build-system]\nrequires = []\nbuild-backend = 3\n", ("build-system", "build-backend")),
        (
            "[build-system]\nrequires = []\nbuild-backend = 'b'\nbackend-path = ['../out']\n",
            ("build-system", "backend-path"),
        ),
    ],
)
def test_bad_build_system_names_file_and_key(
    tmp_path: Path, text: str, key_path: tuple[str, ...]
) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(AffineurError) as info:
        read_build_system(tmp_path)
    assert info.value.file == str(tmp_path / "pyproject.toml")
    assert tuple(info.value.key_path) == key_path


# --- hook calls -----------------------------------------------------------------


def test_requires_hooks_return_what_the_backend_says(
    tmp_path: Path, venv: BuildEnvironment
) -> None:
    project = make_project(
        tmp_path / "p", requires_wheel=["cython>=3"], requires_sdist=["wheel; python_version>'3'"]
    )
    hooks = caller(project, venv)
    assert hooks.get_requires_for_build_wheel() == ["cython>=3"]
    assert hooks.get_requires_for_build_wheel({"pin": "2"}) == ["cython>=3", "from-settings==2"]
    assert hooks.get_requires_for_build_sdist() == ["wheel; python_version>'3'"]
    headers = [line for line in hooks.log.read_text().splitlines() if line.startswith("=== ")]
    assert len(headers) == 3
    assert "get_requires_for_build_sdist (toybackend)" in headers[-1]


def test_build_wheel_returns_a_valid_wheel(tmp_path: Path, venv: BuildEnvironment) -> None:
    project = make_project(tmp_path / "p")
    wheel = caller(project, venv).build_wheel(tmp_path / "out")
    assert wheel == tmp_path / "out" / "toy-1.0-py3-none-any.whl"
    with WheelFile.open(wheel) as source:
        source.validate_record()


def test_prepare_metadata_returns_the_dist_info(tmp_path: Path, venv: BuildEnvironment) -> None:
    project = make_project(tmp_path / "p", prepare=True)
    dist_info = caller(project, venv).prepare_metadata_for_build_wheel(tmp_path / "meta")
    assert dist_info == tmp_path / "meta" / "toy-1.0.dist-info"
    assert "Name: toy" in (dist_info / "METADATA").read_text()


def test_prepare_metadata_without_the_hook_is_none_and_builds_nothing(
    tmp_path: Path, venv: BuildEnvironment
) -> None:
    project = make_project(tmp_path / "p")
    assert caller(project, venv).prepare_metadata_for_build_wheel(tmp_path / "meta") is None
    assert list((tmp_path / "meta").iterdir()) == []


def test_failing_build_carries_the_log_tail(tmp_path: Path, venv: BuildEnvironment) -> None:
    project = make_project(tmp_path / "p", action="fail")
    hooks = caller(project, venv)
    hooks.get_requires_for_build_wheel()  # earlier output must not crowd the tail
    with pytest.raises(AffineurError) as info:
        hooks.build_wheel(tmp_path / "out")
    error = info.value
    assert error.stage == "build"
    assert len(error.causes) == 30
    assert any("the toy build broke" in line for line in error.causes)
    assert "compiler line 0" not in error.causes
    assert "compiler line 49" in error.causes
    assert str(hooks.log) in (error.hint or "")


def test_failing_requires_hook_is_a_hook_error(tmp_path: Path, venv: BuildEnvironment) -> None:
    project = make_project(tmp_path / "p", fail_requires=True)
    with pytest.raises(AffineurError) as info:
        caller(project, venv).get_requires_for_build_sdist()
    assert info.value.stage == "hook"
    assert info.value.causes == ("requires are broken",)


def test_requires_that_are_not_requirements_are_a_hook_error(
    tmp_path: Path, venv: BuildEnvironment
) -> None:
    project = make_project(tmp_path / "p", requires_wheel=["cython >>> 3"])
    with pytest.raises(AffineurError, match="invalid requirement") as info:
        caller(project, venv).get_requires_for_build_wheel()
    assert info.value.stage == "hook"


def test_missing_backend_module_is_a_build_env_error_naming_it(
    tmp_path: Path, venv: BuildEnvironment
) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["mesonpy_missing"]\nbuild-backend = "mesonpy_missing"\n'
    )
    with pytest.raises(AffineurError) as info:
        caller(project, venv).get_requires_for_build_wheel()
    assert info.value.stage == "build-env"
    assert "'mesonpy_missing'" in (info.value.hint or "")


def test_backend_importing_a_missing_dependency_names_that_dependency(
    tmp_path: Path, venv: BuildEnvironment
) -> None:
    project = make_project(tmp_path / "p")
    backend = project / "backend" / "toybackend.py"
    backend.write_text("import cython_is_not_installed\n" + backend.read_text())
    with pytest.raises(AffineurError) as info:
        caller(project, venv).build_wheel(tmp_path / "out")
    assert info.value.stage == "build-env"
    assert "'cython_is_not_installed'" in (info.value.hint or "")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_timeout_kills_the_whole_process_group(tmp_path: Path, venv: BuildEnvironment) -> None:
    pidfile = tmp_path / "child.pid"
    project = make_project(tmp_path / "p", action="sleep", pidfile=str(pidfile))
    started = time.monotonic()
    with pytest.raises(AffineurError) as info:
        caller(project, venv, timeout=1.5).build_wheel(tmp_path / "out")
    assert info.value.stage == "timeout"
    assert info.value.causes == ("sleeping",)
    assert time.monotonic() - started < 10
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_injected_runner_sees_the_exact_environment(tmp_path: Path, venv: BuildEnvironment) -> None:
    calls: list[dict[str, Any]] = []

    def runner(
        cmd: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log: Path,
        network: bool,
        timeout: float | None,
        confinement: Confinement | None = None,
    ) -> None:
        calls.append({"cwd": cwd, "env": dict(env), "network": network, "timeout": timeout})
        run_hook_process(cmd, cwd=cwd, env=env, log=log, network=True, timeout=timeout)

    project = make_project(tmp_path / "p", requires_wheel=["x"])
    hooks = caller(project, venv, env={"PATH": "/usr/bin", "ONLY": "this"}, runner=runner)
    assert hooks.get_requires_for_build_wheel() == ["x"]
    (call,) = calls
    # The timeout is what is left of the caller's budget of 60 s.
    assert call["cwd"] == project and call["network"] is True and 50 < call["timeout"] <= 60
    env = call["env"]
    assert env.pop("_PYPROJECT_HOOKS_BUILD_BACKEND") == "toybackend"
    assert json.loads(env.pop("_PYPROJECT_HOOKS_BACKEND_PATH_JSON")) == [str(project / "backend")]
    # The build venv's scripts come first on PATH, and nothing else was added.
    assert env == {"PATH": f"{venv.python.parent}:/usr/bin", "ONLY": "this"}


def test_wheel_content_is_written_by_the_venv_interpreter(
    tmp_path: Path, venv: BuildEnvironment
) -> None:
    project = make_project(tmp_path / "p")
    wheel = caller(project, venv).build_wheel(tmp_path / "out")
    with zipfile.ZipFile(wheel) as archive:
        env = json.loads(archive.read("toy/env.json"))
    assert env["PATH"].split(":")[0] == str(venv.python.parent)


# --- one process for the hooks of a build ---------------------------------------------


def test_hooks_in_a_session_share_one_process(tmp_path: Path, venv: BuildEnvironment) -> None:
    pids = tmp_path / "pids"
    project = make_project(tmp_path / "p", requires_wheel=["cython>=3"], pids=str(pids))
    hooks = caller(project, venv)
    with hooks.session():
        assert hooks.get_requires_for_build_wheel() == ["cython>=3"]
        assert hooks.get_requires_for_build_wheel({"pin": "2"}) == ["cython>=3", "from-settings==2"]
        wheel = hooks.build_wheel(tmp_path / "out")
    assert wheel.name == "toy-1.0-py3-none-any.whl"
    first, *others = pids.read_text().split()
    assert others == [first, first]
    # Outside a session each hook has a process of its own, as before.
    hooks.get_requires_for_build_wheel()
    assert pids.read_text().split()[-1] != first


def test_a_session_keeps_each_hooks_output_under_its_own_header(
    tmp_path: Path, venv: BuildEnvironment
) -> None:
    project = make_project(tmp_path / "p", say="requirements, said by the backend")
    hooks = caller(project, venv)
    with hooks.session():
        hooks.get_requires_for_build_wheel()
        hooks.build_wheel(tmp_path / "out")
    lines = hooks.log.read_text().splitlines()
    said = lines.index("requirements, said by the backend")
    assert "get_requires_for_build_wheel" in lines[said - 1]
    assert "build_wheel" in lines[said + 1]


def test_a_failed_hook_in_a_session_carries_its_log_tail_and_the_next_hook_runs(
    tmp_path: Path, venv: BuildEnvironment
) -> None:
    project = make_project(tmp_path / "p", action="fail", fail_requires=True)
    hooks = caller(project, venv)
    with hooks.session():
        with pytest.raises(AffineurError) as requires:
            hooks.get_requires_for_build_sdist()
        with pytest.raises(AffineurError) as build:
            hooks.build_wheel(tmp_path / "out")
        assert hooks.get_requires_for_build_wheel() == []
    assert requires.value.stage == "hook"
    assert requires.value.causes == ("requires are broken",)
    assert build.value.stage == "build"
    assert "compiler line 49" in build.value.causes
    assert any("the toy build broke" in line for line in build.value.causes)


def test_a_session_reports_a_missing_backend_like_a_single_hook(
    tmp_path: Path, venv: BuildEnvironment
) -> None:
    project = make_project(tmp_path / "p")
    backend = project / "backend" / "toybackend.py"
    backend.write_text("import cython_is_not_installed\n" + backend.read_text())
    with pytest.raises(AffineurError) as info, caller(project, venv).session() as hooks:
        hooks.get_requires_for_build_wheel()
    assert info.value.stage == "build-env"
    assert "'cython_is_not_installed'" in (info.value.hint or "")


def test_a_timeout_in_a_session_kills_the_whole_process_group(
    tmp_path: Path, venv: BuildEnvironment
) -> None:
    pidfile = tmp_path / "child.pid"
    project = make_project(tmp_path / "p", action="sleep", pidfile=str(pidfile))
    started = time.monotonic()
    with (
        pytest.raises(AffineurError) as info,
        caller(project, venv, timeout=1.5).session() as hooks,
    ):
        hooks.get_requires_for_build_wheel()
        hooks.build_wheel(tmp_path / "out")
    assert info.value.stage == "timeout"
    assert info.value.causes == ("sleeping",)
    assert time.monotonic() - started < 10
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


@pytest.mark.parametrize(
    ("garbage", "error"),
    [
        ("b'[' * 100_000 + b'\\n'", "not a hook's answer"),
        ("b'x' * (17 << 20)", "over 16 MB"),
    ],
)
def test_a_backend_writing_to_the_answer_pipe_gets_one_clear_error(
    tmp_path: Path, venv: BuildEnvironment, garbage: str, error: str
) -> None:
    project = tmp_path / "p"
    (project / "be").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "evil"\nbackend-path = ["be"]\n'
    )
    # The hook process runs the backend's code, which can find the answer pipe's fd.
    (project / "be" / "evil.py").write_text(
        "import os, sys\n\n"
        "def get_requires_for_build_wheel(config_settings=None):\n"
        f"    os.write(int(sys.argv[2]), {garbage})\n"
        "    return []\n"
    )
    hooks = caller(project, venv)
    with hooks.session(), pytest.raises(AffineurError) as err:
        hooks.get_requires_for_build_wheel()
    assert err.value.message == (
        f"the hook process's answer is {error}: something in the build wrote to its answer pipe"
    )
    assert err.value.stage == "hook"


def test_a_session_ends_only_when_nothing_the_build_started_still_runs(
    tmp_path: Path, venv: BuildEnvironment
) -> None:
    from affineur.pep517 import available_sandboxes

    if "unshare" not in available_sandboxes():
        pytest.skip("the unshare sandbox does not work here")
    project = tmp_path / "p"
    (project / "be").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "lingers"\nbackend-path = ["be"]\n'
    )
    # A daemon of its own session, holding none of the hook's descriptors, that would
    # go on writing into the source tree after the hook answered.
    (project / "be" / "lingers.py").write_text(
        "import os, subprocess, sys, time\n\n"
        "def get_requires_for_build_wheel(config_settings=None):\n"
        '    code = \'import time\\nwhile True:\\n    open("ticks", "a").write("x")\\n'
        "    time.sleep(0.01)\\n'\n"
        "    subprocess.Popen([sys.executable, '-c', code], start_new_session=True,\n"
        "                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "    while not os.path.exists('ticks'):\n"
        "        time.sleep(0.01)\n"
        "    return []\n"
    )
    confinement = Confinement("unshare", writable=(project,), read_only=(venv.path,))
    hooks = caller(project, venv, network=False, confinement=confinement)
    with hooks.session():
        assert hooks.get_requires_for_build_wheel() == []
    written = (project / "ticks").stat().st_size
    time.sleep(0.5)
    assert (project / "ticks").stat().st_size == written
