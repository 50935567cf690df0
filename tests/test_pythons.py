"""A variant builds for the Python it names: one repository, one ``doit``, an index per Python.

The pyenv Pythons of the machine stand in for a team's: a variant for 3.12 must
build with a 3.12 (its hooks see it, its C extension is compiled against its
headers and tagged cp312), and pip of that Python must install from its index.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from affineur.errors import AffineurError
from affineur.pep517 import Interpreter, find_interpreter, running_interpreter
from tests.ecosystem import BACKEND_SOURCE, FakeProject
from tests.workspace import Workspace, ok

# A backend that compiles a real C extension with the interpreter running its hooks,
# tags the wheel for it, and records which interpreter that was. The ecosystem's own
# backend (shipped beside it) serves the other hooks.
C_BACKEND = """\
import base64, hashlib, json, os, subprocess, sys, sysconfig, tempfile, zipfile
from pathlib import Path

from fakebackend_base import _config, _dist_info_name, _metadata
from fakebackend_base import get_requires_for_build_sdist  # noqa: F401
from fakebackend_base import get_requires_for_build_wheel  # noqa: F401


def _line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    cfg = _config(Path.cwd())
    abi = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    with tempfile.TemporaryDirectory() as tmp:
        ext = Path(tmp) / ("_speed" + sysconfig.get_config_var("EXT_SUFFIX"))
        subprocess.run(
            ["cc", "-shared", "-fPIC", "-I", sysconfig.get_paths()["include"],
             "speed.c", "-o", str(ext)],
            check=True,
        )
        entries = [
            ("cext_probe/__init__.py", b"from cext_probe._speed import answer\\n"),
            ("cext_probe/" + ext.name, ext.read_bytes()),
        ]
    seen = {"version": list(sys.version_info[:3]), "executable": sys.executable,
            "base_prefix": sys.base_prefix, "jobs": os.environ.get("MAKEFLAGS")}
    entries.append(("cext_probe/_hook_python.json", json.dumps(seen).encode()))
    info = _dist_info_name(cfg)
    wheel = "Wheel-Version: 1.0\\nGenerator: cext\\nRoot-Is-Purelib: false\\n"
    wheel += f"Tag: {abi}-{abi}-{platform}\\n"
    entries += [(f"{info}/METADATA", _metadata(cfg, sdist=False).encode()),
                (f"{info}/WHEEL", wheel.encode())]
    record = [_line(n, d) for n, d in entries] + [f"{info}/RECORD,,"]
    entries.append((f"{info}/RECORD", ("\\n".join(record) + "\\n").encode()))
    filename = f"cext_probe-{cfg['version']}-{abi}-{abi}-{platform}.whl"
    with zipfile.ZipFile(Path(wheel_directory) / filename, "w") as zf:
        for name, data in entries:
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
    return filename
"""

SPEED_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *answer(PyObject *self, PyObject *args) {
    return Py_BuildValue("(ii)", PY_MAJOR_VERSION, PY_MINOR_VERSION);
}

static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, "built for"}, {NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speed", NULL, -1, methods};
PyMODINIT_FUNC PyInit__speed(void) { return PyModule_Create(&module); }
"""

C_PROJECT = FakeProject(
    "cext-probe",
    "1.0",
    summary="a C extension compiled by the Python running its hooks",
    extra_files={
        "_backend/fakebackend.py": C_BACKEND,
        "_backend/fakebackend_base.py": BACKEND_SOURCE,
        "speed.c": SPEED_C,
    },
)


def _pythons(*series: str) -> dict[str, Interpreter]:
    found = {}
    for python in series:
        try:
            found[python] = find_interpreter(python)
        except AffineurError:
            pytest.skip(f"no Python {python} on this machine")
    return found


def _record(ws: Workspace, variant: str, name: str) -> dict[str, Any]:
    for path in (ws.root / "build/cache").glob("*/record.json"):
        data: dict[str, Any] = json.loads(path.read_text())
        if data.get("variant") == variant and data["name"] == name:
            return data
    raise AssertionError(f"no record of {name} for {variant}")


@pytest.mark.slow
def test_one_doit_builds_wheels_for_each_variants_python(
    workspace: Workspace, tmp_path: Path
) -> None:
    ours = running_interpreter().series
    others = [p for p in ("3.12", "3.13", "3.11") if p != ours][:2]
    pythons = _pythons(*others)
    assert workspace.index is not None
    workspace.index.add(C_PROJECT)
    variants = {"cpu": ours} | {f"py{p.replace('.', '')}": p for p in others}
    for name, python in variants.items():
        workspace.variant(name, f'python: "{python}"\n')
    workspace.collection(["cext-probe"], variants=tuple(variants))
    ok(workspace.doit("-n", "2"))

    for name, python in variants.items():
        abi = f"cp{python.replace('.', '')}"
        (wheel,) = (workspace.root / "dist/demo" / name / "files").glob("cext_probe-*.whl")
        assert wheel.name.startswith(f"cext_probe-1.0-{abi}-{abi}-"), wheel.name
        with zipfile.ZipFile(wheel) as zf:
            seen = json.loads(zf.read("cext_probe/_hook_python.json"))
        assert ".".join(map(str, seen["version"][:2])) == python
        record = _record(workspace, name, "cext-probe")
        interpreter = pythons.get(python) or running_interpreter()
        assert record["python"] == interpreter.key()
        assert seen["base_prefix"] in interpreter.prefixes
        # Its provenance names the Python that built it, not the one that ran doit.
        statement = json.loads(wheel.with_name(wheel.name + ".provenance.json").read_text())
        builder = statement["predicate"]["runDetails"]["builder"]["version"]
        assert builder["python"] == interpreter.describe()
    # The build keys differ by the Python alone: each wheel is its own build.
    keys = {_record(workspace, name, "cext-probe")["build_key"] for name in variants}
    assert len(keys) == len(variants)

    # pip of the 3.12 (or other) Python installs from its own index, and the extension
    # it gets was compiled for it.
    python = others[0]
    base = pythons[python].executable
    venv = tmp_path / "venv"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    index = (workspace.root / "dist/demo" / f"py{python.replace('.', '')}" / "simple").as_uri()
    env = {**workspace.environ(), "PIP_CONFIG_FILE": os.devnull}
    install = subprocess.run(
        [base, "-m", "pip", "--python", str(venv / "bin/python"), "install",
         "--isolated", "--index-url", index, "cext-probe"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    done = subprocess.run(
        [str(venv / "bin/python"), "-c", "import cext_probe; print(cext_probe.answer())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == str(tuple(int(p) for p in python.split(".")))

    # A second run has nothing to do, for every Python.
    ok(workspace.doit())
    assert workspace.executed() == []


def test_a_variant_whose_python_is_missing_is_refused_in_one_line(
    workspace: Workspace, tmp_path: Path
) -> None:
    workspace.variant("old", 'python: "3.99"\n')
    workspace.collection(["lib-fast"], variants=("cpu", "old"))
    for result in (workspace.doit(), workspace.doit("lock"), workspace.affineur("check")):
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        text = result.stdout + result.stderr
        assert "variant 'old' builds for Python 3.99, and no Python 3.99 was found" in text
        assert "pyenv install 3.99" in text
    assert not (workspace.root / "lock/demo/old").exists()

    # An interpreter named by path must be the version the variant names.
    fake = tmp_path / "python3.99"
    fake.symlink_to(running_interpreter().executable)
    with pytest.raises(AffineurError) as wrong:
        find_interpreter("3.99", explicit=str(fake), variant="old")
    assert f"its interpreter {fake} is Python {running_interpreter().version}" in str(wrong.value)
    assert wrong.value.key_path == ("interpreter",)


def test_the_search_finds_pyenv_and_uv_installations_newest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if running_interpreter().series in ("3.12", "3.13"):
        pytest.skip("the running Python is found before any search")
    real = _pythons("3.12", "3.13")
    # pyenv's layout, two releases of 3.12 (both the machine's 3.12, by link).
    pyenv = tmp_path / "pyenv"
    for release in ("3.12.1", "3.12.10", "3.12-dev"):
        (pyenv / "versions" / release / "bin").mkdir(parents=True)
        (pyenv / "versions" / release / "bin/python3.12").symlink_to(real["3.12"].executable)
    # uv's layout for 3.13; a shims folder on PATH that must be passed over.
    uv = tmp_path / "uv" / "cpython-3.13.0-linux-x86_64-gnu" / "bin"
    uv.mkdir(parents=True)
    (uv / "python3.13").symlink_to(real["3.13"].executable)
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "python3.12").write_text("#!/bin/sh\nexit 1\n")
    (shims / "python3.12").chmod(0o755)
    environ = {
        "PATH": str(shims),
        "PYENV_ROOT": str(pyenv),
        "HOME": str(tmp_path / "home"),
        "UV_PYTHON_INSTALL_DIR": str(tmp_path / "uv"),
    }
    memo = tmp_path / "interpreters.json"
    found = find_interpreter("3.12", environ=environ, memo=memo)
    assert found.executable == str(pyenv / "versions/3.12.10/bin/python3.12")
    assert found.key() == real["3.12"].key()
    assert find_interpreter("3.13", environ=environ).key() == real["3.13"].key()
    with pytest.raises(AffineurError) as missing:
        find_interpreter("3.12", environ={**environ, "PYENV_ROOT": str(tmp_path / "none")})
    assert "no Python 3.12 was found" in missing.value.message

    # Remembered: the binary is not asked again while it is unchanged.
    import affineur.pep517._interpreter as module

    def refuse(executable: str) -> None:
        raise AssertionError(f"{executable} was started again")

    monkeypatch.setattr(module, "_ask", refuse)
    assert module._probe(found.executable, memo) == found
