"""The fake ecosystem itself: real artefacts from the fake backend, a standards-shaped index,
and pip (an independent consumer) building the catalog from source through it."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import subprocess
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from packaging.metadata import Metadata
from packaging.requirements import Requirement
from pyproject_hooks import BuildBackendHookCaller

from tests.ecosystem import (
    FIXED_EPOCH,
    HTML_V1,
    JSON_V1,
    SELF_HOSTED,
    TEST_FLAG,
    FakeIndex,
    FakeProject,
    normalize,
    run_pip,
    standard_catalog,
    wheel_metadata,
    write_sdist,
    write_wheel,
)

DEMO = FakeProject(
    "Demo_Pkg",
    "1.2",
    summary="demo",
    requires=("lib-a>=1", 'lib-b; python_version < "3.0"'),
    extras={"fast": ("lib-fast", 'lib-c; sys_platform == "linux"')},
    requires_python=">=3.8",
)


# --- artefacts --------------------------------------------------------------------------


def read_wheel(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_wheel_is_valid_with_record_hashes_and_metadata(tmp_path: Path) -> None:
    wheel = write_wheel(DEMO, tmp_path)
    assert wheel.name == "demo_pkg-1.2-py3-none-any.whl"
    files = read_wheel(wheel)
    assert "demo_pkg/__init__.py" in files
    record = files["demo_pkg-1.2.dist-info/RECORD"].decode().splitlines()
    listed = {line.split(",")[0] for line in record}
    assert listed == set(files)
    for line in record:
        name, digest, size = line.split(",")
        if name.endswith("RECORD"):
            assert (digest, size) == ("", "")
            continue
        expected = base64.urlsafe_b64encode(hashlib.sha256(files[name]).digest()).rstrip(b"=")
        assert digest == "sha256=" + expected.decode()
        assert int(size) == len(files[name])
    assert b"Tag: py3-none-any" in files["demo_pkg-1.2.dist-info/WHEEL"]
    meta = Metadata.from_email(files["demo_pkg-1.2.dist-info/METADATA"], validate=True)
    assert meta.name == "Demo_Pkg"
    assert str(meta.requires_python) == ">=3.8"
    assert meta.provides_extra == ["fast"]
    reqs = {str(r) for r in meta.requires_dist or []}
    assert 'lib-c; sys_platform == "linux" and extra == "fast"' in reqs
    assert 'lib-fast; extra == "fast"' in reqs
    assert 'lib-b; python_version < "3.0"' in reqs


def test_wheels_honour_source_date_epoch(tmp_path: Path) -> None:
    first = write_wheel(DEMO, tmp_path / "a").read_bytes()
    again = write_wheel(DEMO, tmp_path / "b").read_bytes()
    later = write_wheel(DEMO, tmp_path / "c", epoch=FIXED_EPOCH + 86400)
    assert first == again
    assert later.read_bytes() != first
    with zipfile.ZipFile(later) as zf:
        stamps = {info.date_time for info in zf.infolist()}
    assert stamps == {time.gmtime(FIXED_EPOCH + 86400)[:6]}


def test_sdist_layout_pkg_info_and_determinism(tmp_path: Path) -> None:
    sdist = write_sdist(DEMO, tmp_path / "a")
    assert sdist.name == "demo_pkg-1.2.tar.gz"
    assert sdist.read_bytes() == write_sdist(DEMO, tmp_path / "b").read_bytes()
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        assert {m.mtime for m in tar.getmembers()} == {FIXED_EPOCH}
        pkg_info = tar.extractfile("demo_pkg-1.2/PKG-INFO").read()  # type: ignore[union-attr]
    assert names == sorted(names)
    assert set(names) == {
        "demo_pkg-1.2/PKG-INFO",
        "demo_pkg-1.2/pyproject.toml",
        "demo_pkg-1.2/_backend/fakebackend.py",
        "demo_pkg-1.2/demo_pkg/__init__.py",
    }
    meta = Metadata.from_email(pkg_info, validate=True)
    assert meta.metadata_version == "2.2"
    assert not meta.dynamic
    assert len(meta.requires_dist or []) == 4


def test_dynamic_requires_dist_is_declared_and_left_out(tmp_path: Path) -> None:
    project = FakeProject("dyn", "1.0", requires=("lib-a",), dynamic=("Requires-Dist",))
    with tarfile.open(write_sdist(project, tmp_path)) as tar:
        pkg_info = tar.extractfile("dyn-1.0/PKG-INFO").read()  # type: ignore[union-attr]
    meta = Metadata.from_email(pkg_info, validate=True)
    assert meta.dynamic == ["requires-dist"]
    assert not meta.requires_dist
    wheel_meta = Metadata.from_email(wheel_metadata(write_wheel(project, tmp_path)))
    assert [str(r) for r in wheel_meta.requires_dist or []] == ["lib-a"]


# --- the hooks, called as a builder calls them --------------------------------------------


def unpacked(project: FakeProject, tmp_path: Path) -> Path:
    with tarfile.open(write_sdist(project, tmp_path / "dist")) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    return tmp_path / "src" / f"{project.package}-{project.version}"


def hooks(source: Path, env: dict[str, str]) -> BuildBackendHookCaller:
    def runner(cmd: Any, cwd: Any = None, extra_environ: Any = None) -> None:
        subprocess.run(
            cmd, cwd=cwd, env={**env, **(extra_environ or {})}, check=True, capture_output=True
        )

    _, backend, backend_path = FakeProject("x", "1").build_system()
    return BuildBackendHookCaller(str(source), backend, backend_path, runner=runner)


def test_hooks_report_dynamic_requires_metadata_env_and_config_settings(tmp_path: Path) -> None:
    project = FakeProject(
        "hooked",
        "2.0",
        requires=("lib-a",),
        wheel_requires=("wheel-tool>=1",),
        sdist_requires=("sdist-tool",),
        read_env=(TEST_FLAG,),
    )
    source = unpacked(project, tmp_path)
    env = {"PATH": os.environ["PATH"], TEST_FLAG: "on", "SOURCE_DATE_EPOCH": "1600000000"}
    caller = hooks(source, env)
    assert caller.get_requires_for_build_wheel() == ["wheel-tool>=1"]
    assert caller.get_requires_for_build_sdist() == ["sdist-tool"]
    dist_info = caller.prepare_metadata_for_build_wheel(str(tmp_path / "meta"))
    assert dist_info == "hooked-2.0.dist-info"
    assert b"Requires-Dist: lib-a" in (tmp_path / "meta" / dist_info / "METADATA").read_bytes()
    name = caller.build_wheel(str(tmp_path / "wheels"), {"opt": "1", "--flag": ["a", "b"]})
    record = json.loads(read_wheel(tmp_path / "wheels" / name)["hooked/_build_env.json"])
    assert record == {
        "config_settings": {"opt": "1", "--flag": ["a", "b"]},
        "env": {TEST_FLAG: "on"},
        "origin": "built",
        "source_date_epoch": "1600000000",
    }


def test_failing_build_explains_itself_on_stderr(tmp_path: Path) -> None:
    source = unpacked(FakeProject("bad", "1.0", fail="no compiler"), tmp_path)
    caller = hooks(source, {"PATH": os.environ["PATH"]})
    with pytest.raises(subprocess.CalledProcessError) as excinfo:
        caller.build_wheel(str(tmp_path / "wheels"))
    assert b"build failed on purpose: no compiler" in excinfo.value.stderr


def test_build_tool_package_ships_the_backend_and_imports_its_runtime_deps(
    tmp_path: Path,
) -> None:
    catalog = {p.name: p for p in standard_catalog()}
    assert catalog["fakebuild-core"].build_system() == ([], "fakebuild_core", ["."])
    assert catalog["fakebuild-core"].backend == SELF_HOSTED
    helper = read_wheel(write_wheel(catalog["chain-helper"], tmp_path))
    text = helper["chain_helper/__init__.py"].decode()
    assert "def build_wheel(" in text
    assert text.rstrip().endswith("import chain_base  # noqa: E402, F401")
    assert catalog["chain-backend"].build_system() == (["chain-helper>=1"], "chain_helper", None)


# --- the index ----------------------------------------------------------------------------


def get(url: str, accept: str | None = None) -> tuple[str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read()


def http_status(url: str) -> int:
    try:
        get(url)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code
    return 200


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[str, dict[str, str | None]]] = []
        self._attrs: dict[str, str | None] | None = None
        self.meta: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._attrs = dict(attrs)
        if tag == "meta":
            self.meta = dict(attrs)

    def handle_data(self, data: str) -> None:
        if self._attrs is not None:
            self.anchors.append((data, self._attrs))
            self._attrs = None


def test_json_and_html_pages_describe_files(fake_index: FakeIndex) -> None:
    ctype, body = get(fake_index.url + "multi/", JSON_V1)
    assert ctype == JSON_V1
    page = json.loads(body)
    assert page["meta"] == {"api-version": "1.1"}
    assert page["versions"] == ["1.0", "1.1", "2.0", "2.1rc1"]
    by_name = {f["filename"]: f for f in page["files"]}
    assert by_name["multi-1.1.tar.gz"]["yanked"] == "1.1 ships a broken module"
    assert by_name["multi-1.0.tar.gz"]["yanked"] is False
    assert by_name["multi-2.0.tar.gz"]["requires-python"] == ">=4"
    for entry in page["files"]:
        assert "core-metadata" not in entry
        _, data = get(entry["url"])
        assert hashlib.sha256(data).hexdigest() == entry["hashes"]["sha256"]
        assert len(data) == entry["size"]

    ctype, body = get(fake_index.url + "multi/")
    assert ctype.startswith("text/html")
    parser = Links()
    parser.feed(body.decode())
    assert parser.meta == {"name": "pypi:repository-version", "content": "1.1"}
    anchors = dict(parser.anchors)
    assert anchors["multi-1.1.tar.gz"]["data-yanked"] == "1.1 ships a broken module"
    assert anchors["multi-2.0.tar.gz"]["data-requires-python"] == ">=4"
    assert "data-yanked" not in anchors["multi-1.0.tar.gz"]
    multi_1 = by_name["multi-1.0.tar.gz"]
    assert (
        anchors["multi-1.0.tar.gz"]["href"]
        == f"{multi_1['url']}#sha256={multi_1['hashes']['sha256']}"
    )


def test_content_negotiation_follows_pep_691(fake_index: FakeIndex) -> None:
    pip_accept = f"{JSON_V1}, {HTML_V1}; q=0.1, text/html; q=0.01"
    assert get(fake_index.url, pip_accept)[0] == JSON_V1
    assert get(fake_index.url, f"{JSON_V1}; q=0.2, {HTML_V1}")[0].startswith(HTML_V1)
    assert get(fake_index.url, f"{JSON_V1}; q=0")[0].startswith("text/html")
    assert get(fake_index.url + "?format=" + urllib.parse.quote(JSON_V1))[0] == JSON_V1
    root = json.loads(get(fake_index.url, JSON_V1)[1])
    names = {p["name"] for p in root["projects"]}
    assert {"app", "chain-backend", "odd-name-pkg", "multi"} <= names


def test_core_metadata_served_for_wheels_only_and_key_is_a_switch(
    fake_index: FakeIndex,
) -> None:
    page = json.loads(get(fake_index.url + "meta-dynamic-wheel/", JSON_V1)[1])
    urls = {f["filename"]: f["url"] for f in page["files"]}
    metadata = get(urls["meta_dynamic_wheel-1.0-py3-none-any.whl"] + ".metadata")[1]
    assert b"Requires-Dist: meta-dep>=1" in metadata
    assert http_status(urls["meta_dynamic_wheel-1.0.tar.gz"] + ".metadata") == 404

    fake_index.core_metadata_key = True
    page = json.loads(get(fake_index.url + "meta-dynamic-wheel/", JSON_V1)[1])
    wheel = next(f for f in page["files"] if f["filename"].endswith(".whl"))
    assert wheel["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
    fake_index.serve_metadata = False
    assert http_status(urls["meta_dynamic_wheel-1.0-py3-none-any.whl"] + ".metadata") == 404


def status_of(index: FakeIndex, path: str) -> tuple[int, str | None]:
    host, port = index.root_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, response.getheader("Location")


def test_project_names_are_canonicalised_like_pep_503(fake_index: FakeIndex) -> None:
    assert status_of(fake_index, "/simple/odd-name-pkg/") == (200, None)
    assert status_of(fake_index, "/simple/Odd_Name.Pkg/") == (301, "/simple/odd-name-pkg/")
    assert status_of(fake_index, "/simple/odd-name-pkg") == (301, "/simple/odd-name-pkg/")
    assert status_of(fake_index, "/simple/no-such-thing/") == (404, None)


def test_failure_injection_log_and_live_updates(fake_index: FakeIndex) -> None:
    fake_index.clear_requests()
    fake_index.fail_next("/simple/multi/", count=2, status=503)
    assert status_of(fake_index, "/simple/multi/")[0] == 503
    assert status_of(fake_index, "/simple/lib-a/")[0] == 200
    assert status_of(fake_index, "/simple/multi/")[0] == 503
    assert status_of(fake_index, "/simple/multi/")[0] == 200
    fake_index.fail_next("/files/", status="reset")
    url = fake_index.file_url("multi-1.0.tar.gz")
    with pytest.raises((ConnectionError, http.client.HTTPException, urllib.error.URLError)):
        get(url)
    assert get(url)[1].startswith(b"\x1f\x8b")
    assert [(r.path, r.status) for r in fake_index.requests] == [
        ("/simple/multi/", 503),
        ("/simple/lib-a/", 200),
        ("/simple/multi/", 503),
        ("/simple/multi/", 200),
        ("/files/multi/multi-1.0.tar.gz", "reset"),
        ("/files/multi/multi-1.0.tar.gz", 200),
    ]

    fake_index.add(FakeProject("multi", "3.0"))
    fake_index.yank("multi", "1.0", "superseded")
    page = json.loads(get(fake_index.url + "multi/", JSON_V1)[1])
    assert page["versions"][-1] == "3.0"
    assert {f["filename"]: f["yanked"] for f in page["files"]}["multi-1.0.tar.gz"] == "superseded"
    fake_index.remove("multi", "3.0")
    assert "3.0" not in json.loads(get(fake_index.url + "multi/", JSON_V1)[1])["versions"]


def test_relative_file_urls_resolve_against_the_page(empty_fake_index: FakeIndex) -> None:
    empty_fake_index.absolute_urls = False
    empty_fake_index.add(FakeProject("solo", "1.0"))
    page = json.loads(get(empty_fake_index.url + "solo/", JSON_V1)[1])
    url = urllib.parse.urljoin(empty_fake_index.url + "solo/", page["files"][0]["url"])
    assert get(url)[1] == empty_fake_index.files("solo")[0].data


# --- pip as an independent consumer --------------------------------------------------------


@pytest.mark.slow
def test_pip_downloads_the_sdist(fake_index: FakeIndex, tmp_path: Path) -> None:
    args = ["download", "--no-deps", "--no-binary", ":all:", "-d", str(tmp_path), "app"]
    result = run_pip(args, index_url=fake_index.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["app-1.0.tar.gz"]
    assert all(r.path.startswith(("/simple/", "/files/")) for r in fake_index.requests)


@pytest.mark.slow
def test_pip_builds_app_from_source_through_the_build_tool_chain(
    fake_index: FakeIndex, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    args = ["install", "--no-binary", ":all:", "--target", str(target), "app", "env-reader"]
    result = run_pip(args, index_url=fake_index.url, env={TEST_FLAG: "x"})
    assert result.returncode == 0, result.stdout + result.stderr
    installed = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info")}
    # lib-b sits behind a false marker; build tools stay in the build environments.
    assert installed == {"app", "lib_a", "lib_fast", "lib_c", "env_reader"}
    built = json.loads((target / "app" / "_build_env.json").read_text())
    assert built["origin"] == "built"
    seen = json.loads((target / "env_reader" / "_build_env.json").read_text())
    assert seen["env"] == {TEST_FLAG: "x"}
    fetched = {r.path.split("/")[2] for r in fake_index.requests if r.path.startswith("/files/")}
    assert {"chain-backend", "chain-helper", "chain-base", "fakebuild-core"} <= fetched
    assert "lib-b" not in fetched


# --- the catalog --------------------------------------------------------------------------


def test_catalog_is_self_contained_and_documented() -> None:
    catalog = standard_catalog()
    releases = [(p.canonical_name, p.version) for p in catalog]
    assert len(releases) == len(set(releases))
    assert all(p.summary for p in catalog)
    names = {p.canonical_name for p in catalog}
    for project in catalog:
        named = [
            *project.requires,
            *project.build_requires,
            *project.wheel_requires,
            *project.sdist_requires,
            *(req for reqs in project.extras.values() for req in reqs),
        ]
        # Hermetic: everything a build or install could ask for is served by the index.
        missing = {normalize(Requirement(r).name) for r in named} - names
        assert not missing, (project.name, missing)
