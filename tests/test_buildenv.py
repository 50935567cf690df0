"""Build environments: pip-less venvs holding exactly the wheels given, and their store."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from affineur.errors import AffineurError
from affineur.pep517 import BuildEnvironment, EnvironmentStore
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


# --- the store: environments from wheels unpacked once, shared read-only ---------------


def _tool_wheels(wheels: Path) -> tuple[Path, Path]:
    tool = make_wheel(
        wheels,
        "Demo_Tool",
        "1.2",
        files={
            "Demo_Tool/cli.py": b"def main():\n    print('hello from demo')\n",
            "Demo_Tool-1.2.data/scripts/raw-tool": b"#!python\nprint('raw tool ran')\n",
        },
        scripts={"demo-tool": "Demo_Tool.cli:main"},
    )
    return tool, make_wheel(wheels, "helper", "0.1")


def test_a_stored_environment_runs_packages_and_scripts(tmp_path: Path, wheels: Path) -> None:
    store = EnvironmentStore(tmp_path / "store")
    env = store.environment(_tool_wheels(wheels))
    assert env.path.is_relative_to(tmp_path / "store" / "envs")
    assert env.installed() == {"demo-tool": "1.2", "helper": "0.1"}
    imported = subprocess.run(
        [str(env.python), "-c", "import Demo_Tool, helper; print(Demo_Tool.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "1.2"
    for script, said in (("demo-tool", "hello from demo"), ("raw-tool", "raw tool ran")):
        path = env.bin / script
        # The interpreter is named on the first line, or on the second when its path
        # is too long for a shebang (installer's /bin/sh trampoline).
        assert str(env.python) in "".join(path.read_text().splitlines(keepends=True)[:2])
        ran = subprocess.run([str(path)], capture_output=True, text=True, check=True)
        assert ran.stdout.strip() == said
    # Opened again (by a later run), it is the same environment.
    assert BuildEnvironment.open(env.path) == env


def test_stored_files_are_read_only_links_with_their_bytecode_compiled(
    tmp_path: Path, wheels: Path
) -> None:
    store = EnvironmentStore(tmp_path / "store")
    env = store.environment(_tool_wheels(wheels))
    module = env.purelib / "Demo_Tool" / "cli.py"
    (unpacked,) = (tmp_path / "store" / "unpacked").glob("demo-tool-*/**/Demo_Tool/cli.py")
    assert module.stat().st_ino == unpacked.stat().st_ino
    assert module.stat().st_mode & 0o222 == 0
    (pyc,) = (module.parent / "__pycache__").glob("cli.*.pyc")
    # Unchecked-hash bytecode (PEP 552 flags 0b01): never re-validated against the source.
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b01


def test_a_release_rebuilt_from_source_is_linked_to_the_files_and_bytecode_of_its_upstream_wheel(
    tmp_path: Path, wheels: Path
) -> None:
    # Discovery unpacks the upstream wheel, a build later the wheel built from the
    # same release: other wheels (other RECORD, other extra files), the same sources.
    code = {"tool/core.py": b"def answer():\n    return 42\n"}
    (wheels / "upstream").mkdir()
    (wheels / "own").mkdir()
    upstream = make_wheel(wheels / "upstream", "tool", "1.0", files=code)
    own = make_wheel(wheels / "own", "tool", "1.0", files={**code, "tool/built.txt": b"ours"})
    shared = tmp_path / "files"
    first = EnvironmentStore(tmp_path / "discovery", files=shared).environment([upstream])
    second = EnvironmentStore(tmp_path / "build", files=shared).environment([own])
    for rel in ("core.py", f"__pycache__/core.{sys.implementation.cache_tag}.pyc"):
        was, now = (env.purelib / "tool" / rel for env in (first, second))
        assert now.stat().st_ino == was.stat().st_ino, rel
        assert now.stat().st_mode & 0o222 == 0
    # The only file of the second wheel not in the first was written anew.
    assert (second.purelib / "tool" / "built.txt").read_bytes() == b"ours"
    shown = subprocess.run(
        [str(second.python), "-c", "import tool.core as c; print(c.answer(), c.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    # Linked bytecode names the file it was imported from, not the one compiled first.
    assert shown.stdout.split() == ["42", str(second.purelib / "tool" / "core.py")]


def test_bytecode_stays_in_the_store_when_a_pycache_prefix_is_set(
    tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hooks run without PYTHONPYCACHEPREFIX: bytecode put under the prefix is lost to them.
    prefix = tmp_path / "prefix"
    monkeypatch.setattr(sys, "pycache_prefix", str(prefix))
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(prefix))
    env = EnvironmentStore(tmp_path / "store").environment(_tool_wheels(wheels))
    module = env.purelib / "Demo_Tool" / "cli.py"
    assert list((module.parent / "__pycache__").glob("cli.*.pyc"))
    assert not list(prefix.rglob("*.pyc"))


def test_one_environment_per_set_of_wheels_and_one_unpacking_per_wheel(
    tmp_path: Path, wheels: Path
) -> None:
    tool, helper = _tool_wheels(wheels)
    other = make_wheel(wheels, "other", "3.0")
    store = EnvironmentStore(tmp_path / "store")
    first = store.environment([tool, helper])
    marker = first.path / ".affineur-complete"
    made = marker.stat().st_mtime_ns
    assert store.environment([helper, tool]) == first
    assert marker.stat().st_mtime_ns == made
    assert EnvironmentStore(tmp_path / "store").environment([tool, helper]) == first
    second = store.environment([helper, other])
    assert second.path != first.path
    assert second.installed() == {"helper": "0.1", "other": "3.0"}
    unpacked = sorted(p.name.split("-")[0] for p in (tmp_path / "store" / "unpacked").iterdir()
                      if p.is_dir())  # fmt: skip
    assert unpacked == ["demo", "helper", "other"]


def test_a_half_made_environment_is_made_again(tmp_path: Path, wheels: Path) -> None:
    store = EnvironmentStore(tmp_path / "store")
    wheel = make_wheel(wheels, "helper", "0.1")
    env = store.environment([wheel])
    # A run killed while making it leaves no marker, and maybe a stray file.
    (env.path / ".affineur-complete").unlink()
    (env.purelib / "stray.py").write_text("")
    again = store.environment([wheel])
    assert again == env and not (env.purelib / "stray.py").exists()
    assert again.installed() == {"helper": "0.1"}


def test_concurrent_requests_for_one_environment_make_it_once(tmp_path: Path, wheels: Path) -> None:
    store = EnvironmentStore(tmp_path / "store")
    tool_wheels = _tool_wheels(wheels)
    with ThreadPoolExecutor(4) as pool:
        envs = list(pool.map(lambda _: store.environment(tool_wheels), range(4)))
    assert len({e.path for e in envs}) == 1
    assert envs[0].installed() == {"demo-tool": "1.2", "helper": "0.1"}
    assert len(list((tmp_path / "store" / "envs").glob("*/pyvenv.cfg"))) == 1


def test_the_store_refuses_two_versions_of_one_project(tmp_path: Path, wheels: Path) -> None:
    one = make_wheel(wheels, "helper", "0.1")
    (wheels / "other").mkdir()
    two = make_wheel(wheels / "other", "Helper", "0.2")
    store = EnvironmentStore(tmp_path / "store")
    with pytest.raises(AffineurError) as info:
        store.environment([one, two])
    assert info.value.stage == "build-env" and info.value.package == "helper"
    assert not (tmp_path / "store" / "envs").exists()


def test_the_store_refuses_a_tampered_wheel_and_keeps_nothing_of_it(
    tmp_path: Path, wheels: Path
) -> None:
    good = make_wheel(wheels, "helper", "0.1")
    tampered = wheels / "t" / good.name
    tampered.parent.mkdir()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, b"VERSION = 'evil'\n" if info.filename.endswith(".py") else data)
    store = EnvironmentStore(tmp_path / "store")
    with pytest.raises(AffineurError) as info:
        store.environment([tampered])
    assert info.value.stage == "build-env" and info.value.file == str(tampered)
    assert not list((tmp_path / "store").glob("*/*/.affineur-complete"))
    # The good wheel, with the same name, is not mistaken for the bad one.
    assert store.environment([good]).installed() == {"helper": "0.1"}


def test_two_wheels_with_one_file_are_refused(tmp_path: Path, wheels: Path) -> None:
    one = make_wheel(wheels, "one", "1.0", files={"shared/mod.py": b""})
    two = make_wheel(wheels, "two", "1.0", files={"shared/mod.py": b""})
    with pytest.raises(AffineurError, match=r"shared/mod\.py") as info:
        EnvironmentStore(tmp_path / "store").environment([one, two])
    assert info.value.stage == "build-env"
