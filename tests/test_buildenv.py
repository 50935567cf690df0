"""Build environments: pip-less venvs holding exactly the wheels given."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from affineur.errors import AffineurError
from affineur.pep517 import BuildEnvironment
from tests.test_wheelfile import make_wheel


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    directory = tmp_path / "wheels"
    directory.mkdir()
    return directory


def test_fresh_environment_has_no_pip_and_nothing_installed(tmp_path: Path) -> None:
    env = BuildEnvironment.create(tmp_path / "env")
    assert env.installed() == {}
    assert env.python.is_file()
    assert env.purelib.is_dir() and env.purelib.is_relative_to(tmp_path / "env")
    done = subprocess.run([str(env.python), "-c", "import pip"], capture_output=True, check=False)
    assert done.returncode != 0


def test_install_makes_packages_and_scripts_usable(tmp_path: Path, wheels: Path) -> None:
    demo = make_wheel(
        wheels,
        "Demo_Tool",
        "1.2",
        files={"Demo_Tool/cli.py": b"def main():\n    print('hello from demo')\n"},
        scripts={"demo-tool": "Demo_Tool.cli:main"},
    )
    helper = make_wheel(wheels, "helper", "0.1")
    env = BuildEnvironment.create(tmp_path / "env")
    env.install([demo, helper])
    assert env.installed() == {"demo-tool": "1.2", "helper": "0.1"}
    imported = subprocess.run(
        [str(env.python), "-c", "import Demo_Tool, helper; print(Demo_Tool.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "1.2"
    script = env.bin / "demo-tool"
    assert script.read_text().startswith(f"#!{env.python}")
    ran = subprocess.run([str(script)], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "hello from demo"
    # No bytecode: compiling every build tool costs more than it saves.
    assert not list(env.purelib.rglob("*.pyc"))


def test_open_reads_the_cached_paths(tmp_path: Path, wheels: Path) -> None:
    created = BuildEnvironment.create(tmp_path / "env")
    created.install([make_wheel(wheels, "helper", "0.1")])
    opened = BuildEnvironment.open(tmp_path / "env")
    assert opened == created
    assert opened.installed() == {"helper": "0.1"}


def test_open_refuses_a_directory_that_is_not_an_environment(tmp_path: Path) -> None:
    with pytest.raises(AffineurError) as info:
        BuildEnvironment.open(tmp_path)
    assert info.value.stage == "build-env"


def test_two_versions_of_one_project_are_refused_before_installing(
    tmp_path: Path, wheels: Path
) -> None:
    one = make_wheel(wheels, "helper", "0.1")
    (wheels / "other").mkdir()
    two = make_wheel(wheels / "other", "Helper", "0.2")
    env = BuildEnvironment.create(tmp_path / "env")
    with pytest.raises(AffineurError) as info:
        env.install([one, two])
    assert info.value.stage == "build-env" and info.value.package == "helper"
    assert env.installed() == {}


def test_a_project_already_installed_is_refused(tmp_path: Path, wheels: Path) -> None:
    env = BuildEnvironment.create(tmp_path / "env")
    env.install([make_wheel(wheels, "helper", "0.1")])
    with pytest.raises(AffineurError, match="already installed"):
        env.install([make_wheel(wheels, "helper", "0.1")])


def test_a_wheel_whose_record_does_not_match_is_refused(tmp_path: Path, wheels: Path) -> None:
    good = make_wheel(wheels, "helper", "0.1")
    tampered = wheels / "t" / good.name
    tampered.parent.mkdir()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, b"VERSION = 'evil'\n" if info.filename.endswith(".py") else data)
    env = BuildEnvironment.create(tmp_path / "env")
    with pytest.raises(AffineurError) as info:
        env.install([tampered])
    assert info.value.stage == "build-env" and info.value.file == str(tampered)
    assert env.installed() == {}


def test_a_bad_file_name_is_refused(tmp_path: Path) -> None:
    env = BuildEnvironment.create(tmp_path / "env")
    with pytest.raises(AffineurError, match="not a wheel file name"):
        env.install([tmp_path / "helper.zip"])


def test_another_interpreter_creates_its_own_venv(tmp_path: Path) -> None:
    # A wrapper is "another interpreter" as far as create() can tell.
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env = BuildEnvironment.create(tmp_path / "env", python=str(wrapper))
    assert env.installed() == {}
    assert env.purelib.is_relative_to(tmp_path / "env")


def test_a_broken_interpreter_is_a_build_env_error(tmp_path: Path) -> None:
    broken = tmp_path / "python-broken"
    broken.write_text("#!/bin/sh\necho no venv module >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(AffineurError) as info:
        BuildEnvironment.create(tmp_path / "env", python=str(broken))
    assert info.value.stage == "build-env"
    assert info.value.causes == ("no venv module",)
