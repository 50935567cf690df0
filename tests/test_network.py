"""Against the real package index (the one pip is configured to use): the requests tree and a C
extension, locked and built from source, then installed offline from the produced index."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.workspace import Workspace, make_workspace, ok

# Both tests read one lock and one build of both trees: they share every build tool
# (setuptools and the rest, built from source once), and one worker runs them.
pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.xdist_group("network")]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = make_workspace(tmp_path_factory.mktemp("real") / "checkout", index=None)
    # No `indexes`: the variant uses pip's configured index, as a user's would.
    ws.write("variants/cpu.yaml", "description: cpu\nresources: {cpu: 2}\n")
    ws.collection(["requests", "markupsafe"])
    ok(ws.doit("-n", "2"))
    return ws


def install_offline(ws: Workspace, venv: Path, *names: str) -> subprocess.CompletedProcess[str]:
    # A venv without pip, filled by this interpreter's pip: no ensurepip per test.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    simple = (ws.root / "dist/demo/cpu/simple").as_uri()
    # Only the produced index: none of pip's configured indexes or wheel folders.
    env = {k: v for k, v in ws.environ().items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin/python"),
            "install",
            "--no-cache-dir",
            "--index-url",
            simple,
            *names,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_requests_tree_from_source(built: Workspace, tmp_path: Path) -> None:
    ws = built
    nodes = ws.nodes()
    names = {n["name"] for n in nodes.values()}
    # The build tools all the way down, each from an sdist with its hash.
    assert {"requests", "urllib3", "idna", "certifi", "charset-normalizer"} <= names
    assert {"setuptools", "flit-core", "hatchling", "setuptools-scm", "pathspec", "pluggy"} <= names
    for node in nodes.values():
        assert len(node["sdist"]["sha256"]) == 64
    install = install_offline(ws, tmp_path / "venv", "requests")
    assert install.returncode == 0, install.stderr
    check = subprocess.run(
        [
            str(tmp_path / "venv/bin/python"),
            "-c",
            "import requests, importlib.metadata as m; print(requests.__version__); "
            "print(m.distribution('requests').read_text('affineur/build.json') is not None)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.split()[1] == "True"


def test_c_extension_builds_a_platform_wheel(built: Workspace, tmp_path: Path) -> None:
    ws = built
    (wheel,) = (ws.root / "dist/demo/cpu/files").glob("markupsafe-*.whl")
    assert "-cp311-" in wheel.name and "linux" in wheel.name
    with zipfile.ZipFile(wheel) as zf:
        assert any(n.endswith(".so") for n in zf.namelist())
    install = install_offline(ws, tmp_path / "venv", "markupsafe")
    assert install.returncode == 0, install.stderr
    run = subprocess.run(
        [
            str(tmp_path / "venv/bin/python"),
            "-c",
            "from markupsafe import _speedups, escape; print(escape('<a>'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.strip() == "&lt;a&gt;"
