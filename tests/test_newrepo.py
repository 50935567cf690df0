"""A new user's path end to end: init, doit, check, log, outdated, export to pip and uv, serve.

One repository is made with ``affineur init`` against the fake index and built
once by ``doit`` (module fixture); each test then uses it as a user would, through
the ``affineur`` command in a subprocess and the installers as they come.
"""

from __future__ import annotations

import ensurepip
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from affineur.config import validate
from tests.ecosystem import BuiltRelease, FakeIndex, FakeProject, clean_pip_env
from tests.workspace import Workspace, ok

# The module's tests share one built repository: one worker builds it, once.
pytestmark = pytest.mark.xdist_group("newrepo")

REQUIREMENTS = ("meta-static", "lib-c")
"""meta-static installs meta-dep; lib-c is built with fakebuild-core (a build-only tool)."""


@pytest.fixture(scope="module")
def index(fake_catalog_releases: list[BuiltRelease]) -> Iterator[FakeIndex]:
    with FakeIndex() as served:
        served.add(*fake_catalog_releases)
        yield served


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, index: FakeIndex) -> Workspace:
    """``affineur init`` then ``doit``: the first run must lock, build and publish."""
    root = tmp_path_factory.mktemp("new") / "wheels"
    ws = Workspace(root, index)
    args = ["init", str(root), "--index-url", index.url]
    for requirement in REQUIREMENTS:
        args += ["-r", requirement]
    ok(Workspace(root.parent, index).affineur(*args))
    ok(ws.doit("-n", "2"))
    return ws


@pytest.fixture(scope="module")
def pip23(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The pip that ``python3 -m venv`` installs here: the one bundled with Python (23.2).

    Unpacked from Python's own copy rather than installed by ensurepip, which
    would cost many seconds for the same files.
    """
    venv = tmp_path_factory.mktemp("pip23") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    bundled = next((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    (site,) = venv.glob("lib/python*/site-packages")
    with zipfile.ZipFile(bundled) as wheel:
        wheel.extractall(site)
    version = bundled.name.split("-")[1]
    found = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.startswith(f"pip {version} "), found.stdout
    assert version.startswith("23."), "this Python bundles another pip than the one tested"
    return [str(venv / "bin/python"), "-m", "pip"]


def uv() -> str:
    return shutil.which("uv") or str(Path(sys.executable).parent / "uv")


def pip_install(pip: list[str], target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pip install into ``target`` (its own folder: one pip serves every test)."""
    return subprocess.run(
        [*pip, "install", "--isolated", "--no-compile", "--target", str(target), *args],
        env=clean_pip_env(),
        capture_output=True,
        text=True,
        check=False,
    )


def installed(target: Path) -> dict[str, str]:
    """name -> version of what an install put in ``target``."""
    found = {}
    for dist in target.glob("*.dist-info"):
        name, version = dist.name.removesuffix(".dist-info").split("-")
        found[name.replace("_", "-")] = version
    return found


@pytest.mark.slow
def test_init_writes_a_repository_whose_first_doit_works(repo: Workspace) -> None:
    root = repo.root
    for rel in ("dodo.py", "pyproject.toml", ".gitignore", ".github/workflows/affineur.yml"):
        assert (root / rel).is_file(), rel
    assert "affineur check" in (root / ".github/workflows/affineur.yml").read_text()
    assert "/build/" in (root / ".gitignore").read_text()
    collection = tomllib.loads((root / "collections/main.toml").read_text())
    assert collection["requirements"] == list(REQUIREMENTS)
    assert (root / ".git").is_dir()
    assert (root / "dist/main/cpu/simple/meta-static/index.html").is_file()
    assert repo.outcomes()["build:cpu:meta-static-1.0"] == "built"
    assert ok(repo.affineur("check")).stdout.splitlines()[:2] == [
        "ok        config",
        "ok        main/cpu: 4 packages, 3 installed, 0 of 4 sources with publisher attestations",
    ]
    # A second init never overwrites a repository.
    again = repo.affineur("init", str(root))
    assert again.returncode == 2
    assert again.stderr.startswith(f"error: {root} already holds an affineur repository")


def test_init_dodo_and_doit_table_match_this_repository(tmp_path: Path) -> None:
    """A new repository runs the same dodo.py and plugins as this one: they cannot drift."""
    from affineur.cli import init_repository
    from tests.paths import REPO

    init_repository(tmp_path / "r", git=False)
    assert (tmp_path / "r/dodo.py").read_text() == (REPO / "dodo.py").read_text()
    ours = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["doit"]
    assert tomllib.loads((tmp_path / "r/pyproject.toml").read_text())["tool"]["doit"] == ours


@pytest.mark.slow
def test_an_empty_new_repository_builds_nothing_cleanly(tmp_path: Path, index: FakeIndex) -> None:
    ws = Workspace(tmp_path / "empty", index)
    ok(Workspace(tmp_path, index).affineur("init", "empty", "--index-url", index.url, "--no-git"))
    assert not (ws.root / ".git").exists()
    ok(ws.doit())
    # Nothing to build, and an empty index published: pip finds nothing, rather than fails.
    assert (ws.root / "dist/main/cpu/simple/index.html").is_file()
    assert not list((ws.root / "dist/main/cpu/files").iterdir())
    assert "main/cpu: 0 packages" in ok(ws.affineur("check")).stdout
    assert ok(ws.affineur("add", "meta-dep")).stdout == "main: + meta-dep\n"
    assert "stale" in ws.affineur("check").stdout


@pytest.mark.slow
def test_log_shows_the_last_build(repo: Workspace) -> None:
    result = ok(repo.affineur("log", "meta-static"))
    assert "build_wheel" in result.stdout
    assert result.stderr.startswith("# meta-static==1.0 (cpu): the last build succeeded; build/")
    data = json.loads(ok(repo.affineur("log", "lib-c", "--format", "json")).stdout)
    validate(data, "cli-log", file="log")
    assert (data["outcome"], data["version"], data["variant"]) == ("built", "1.0", "cpu")
    assert (repo.root / data["path"]).is_file()
    path = ok(repo.affineur("log", "meta-dep", "--path")).stdout.strip()
    assert Path(path).is_file() and path.endswith("build.log")


@pytest.mark.slow
def test_outdated_lists_newer_install_and_build_releases(repo: Workspace, index: FakeIndex) -> None:
    assert "every locked package is at its newest release" in ok(repo.affineur("outdated")).stdout
    index.add(
        FakeProject("meta-dep", "1.5"),
        FakeProject("meta-dep", "2.0rc1"),  # a pre-release: not offered
        FakeProject("fakebuild-core", "1.1", provides_backend=True, backend="fakebuild_core"),
    )
    result = ok(repo.affineur("outdated", "--format", "json"))
    data = json.loads(result.stdout)
    validate(data, "cli-outdated", file="outdated")
    rows = {p["name"]: p for p in data["packages"]}
    assert rows["meta-dep"] == {
        "name": "meta-dep",
        "locked": ["1.0"],
        "latest": "1.5",
        "scope": "install",
        "locks": ["main/cpu"],
    }
    assert rows["fakebuild-core"]["scope"] == "build"
    assert set(rows) == {"meta-dep", "fakebuild-core"}
    table = ok(repo.affineur("outdated", "--scope", "build")).stdout
    assert re.search(r"^fakebuild-core\s+1\.0\s+1\.1\s+build\s+main/cpu$", table, re.M)
    assert "meta-dep" not in table


def uv_install(target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [uv(), "pip", "install", "--no-config", "--target", str(target), *args],
        env={**clean_pip_env(), "UV_NO_CACHE": "1", "UV_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.slow
def test_constraints_export_installs_with_pip_23_and_uv(
    repo: Workspace, tmp_path: Path, pip23: list[str]
) -> None:
    requirements = tmp_path / "requirements.txt"
    ok(repo.affineur("export", "-o", str(requirements)))
    text = requirements.read_text()
    # Run the file's own recipes, as written in its header.
    (recipe,) = [line for line in text.splitlines() if line.startswith("#   pip install")]
    argv = recipe.removeprefix("#   pip install ").replace("FILE", str(requirements)).split()
    result = pip_install(pip23, tmp_path / "pip23", *argv)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = {"meta-static": "1.0", "meta-dep": "1.0", "lib-c": "1.0"}
    assert installed(tmp_path / "pip23") == expected
    (uv_recipe,) = [line for line in text.splitlines() if line.startswith("#   uv pip install")]
    uv_argv = uv_recipe.removeprefix("#   uv pip install ").replace("FILE", str(requirements))
    result = uv_install(tmp_path / "uv", *uv_argv.split())
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(tmp_path / "uv") == expected
    # A wheel that is not the one we built is refused: the hashes are ours.
    requirements.write_text(text.replace(text.split("--hash=sha256:")[1][:64], "0" * 64))
    result = pip_install(pip23, tmp_path / "bad", *argv)
    assert result.returncode != 0 and "HASHES" in result.stderr.upper()


@pytest.mark.slow
def test_pylock_export_installs_with_uv(repo: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "deploy" / "pylock.toml"
    ok(repo.affineur("export", "--format", "pylock", "-o", str(out)))
    data = tomllib.loads(out.read_text())
    assert data["requires-python"] == f"=={sys.version_info.major}.{sys.version_info.minor}.*"
    static = next(p for p in data["packages"] if p["name"] == "meta-static")
    assert static["dependencies"] == [{"name": "meta-dep"}]
    result = uv_install(tmp_path / "uv", "-r", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(tmp_path / "uv") == {"meta-static": "1.0", "meta-dep": "1.0", "lib-c": "1.0"}


@pytest.fixture
def server(repo: Workspace) -> Iterator[str]:
    """``affineur serve --port 0`` running; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "affineur.cli", "serve", "--port", "0"],
        cwd=repo.root / "collections",  # found from a subfolder, like every command
        env=repo.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("serving 1 index(es)"), first + process.stderr.read()
        line = process.stdout.readline()
        url = line.split(": ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/main/cpu/simple/")
        yield url.removesuffix("main/cpu/simple/")
    finally:
        process.terminate()
        process.communicate(timeout=10)  # also closes the pipes


def get(url: str, accept: str | None = None) -> requests.Response:
    session = requests.Session()
    session.trust_env = False  # never a proxy for 127.0.0.1
    headers = {"Accept": accept} if accept else {}
    return session.get(url, headers=headers, timeout=10, allow_redirects=False)


@pytest.mark.slow
def test_serve_negotiates_json_and_html_and_only_reads(server: str) -> None:
    page = get(f"{server}main/cpu/simple/meta-static/", "application/vnd.pypi.simple.v1+json")
    assert page.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
    data: dict[str, Any] = page.json()
    assert data["meta"]["api-version"].startswith("1.")
    (file,) = data["files"]
    assert file["filename"] == "meta_static-1.0-py3-none-any.whl"
    wheel = get(requests.compat.urljoin(page.url, file["url"]))
    import hashlib

    assert hashlib.sha256(wheel.content).hexdigest() == file["hashes"]["sha256"]
    metadata = get(requests.compat.urljoin(page.url, file["url"]) + ".metadata")
    assert b"Name: meta-static" in metadata.content
    html = get(f"{server}simple/meta-static/", "text/html")
    assert html.headers["Content-Type"] == "text/html"
    assert "meta_static-1.0-py3-none-any.whl#sha256=" in html.text
    prefer_html = "application/vnd.pypi.simple.v1+json;q=0.2, application/vnd.pypi.simple.v1+html"
    assert get(f"{server}simple/", prefer_html).headers["Content-Type"].endswith("v1+html")
    assert get(f"{server}simple/", "application/json").status_code == 406
    assert get(f"{server}simple/Meta_Static/").headers["Location"].endswith("/simple/meta-static/")
    assert get(f"{server}simple/nothing-here/").status_code == 404
    session = requests.Session()
    session.trust_env = False
    assert session.post(f"{server}simple/", data=b"x", timeout=10).status_code == 405
    assert session.put(f"{server}main/cpu/files/x.whl", data=b"x", timeout=10).status_code == 405


@pytest.mark.slow
def test_pip_and_uv_install_from_the_served_index(
    server: str, tmp_path: Path, pip23: list[str]
) -> None:
    result = pip_install(pip23, tmp_path / "pip", "--index-url", f"{server}simple/", "meta-static")
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(tmp_path / "pip") == {"meta-static": "1.0", "meta-dep": "1.0"}
    # uv asks for PEP 691 JSON, at the collection/variant URL this time.
    result = uv_install(tmp_path / "uv", "--index-url", f"{server}main/cpu/simple/", "lib-c")
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(tmp_path / "uv") == {"lib-c": "1.0"}


@pytest.mark.slow
@pytest.mark.network
def test_constraints_export_installs_with_current_pip(repo: Workspace, tmp_path: Path) -> None:
    """The newest pip, fetched from the package index pip is configured for (hence network)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    upgraded = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    requirements = tmp_path / "requirements.txt"
    ok(repo.affineur("export", "-o", str(requirements)))
    (recipe,) = [
        line for line in requirements.read_text().splitlines() if line.startswith("#   pip install")
    ]
    argv = recipe.removeprefix("#   pip install ").replace("FILE", str(requirements)).split()
    result = pip_install([str(venv / "bin/python"), "-m", "pip"], tmp_path / "out", *argv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(tmp_path / "out") == {"meta-static": "1.0", "meta-dep": "1.0", "lib-c": "1.0"}
