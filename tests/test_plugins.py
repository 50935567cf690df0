"""Site plugins (the ``affineur.hooks`` entry point), end to end through ``doit``.

:data:`SITE_PLUGIN` is the documented example: a site's distribution that
replaces how one package is fetched (it adds a vendored file to the sdist),
prepared (it writes a file into the unpacked tree) and built (it runs the
default build and notes it in the log). It is registered the way an installed
distribution is, by a ``.dist-info`` with ``entry_points.txt``, in a folder the
``doit`` subprocess gets on its PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from affineur.errors import AffineurError
from affineur.hooks import BuildRequest, FetchRequest, PluginHooks, load_hooks, plugin_names
from affineur.index import sha256_file
from tests.workspace import Workspace, ok

SITE_PLUGIN = '''\
"""A site's affineur plugins (registered under the 'affineur.hooks' entry point group)."""

import gzip
import io
import tarfile
from pathlib import Path

from affineur.hooks import BuildRequest, DefaultHooks, FetchRequest, PrepareRequest


class Vendor(DefaultHooks):
    """Fetch the sdist as usual and vendor one file into it; mark the tree; build as usual."""

    def fetch(self, request: FetchRequest) -> Path:
        original = request.default()
        package = request.name.replace("-", "_")
        with tarfile.open(original) as tar:
            members = [(m, tar.extractfile(m).read() if m.isfile() else None)
                       for m in tar.getmembers()]
        top = members[0][0].name.split("/")[0]
        vendored = b"vendored by the site\\n"
        extra = tarfile.TarInfo(f"{top}/{package}/_vendored.txt")
        extra.size, extra.mtime = len(vendored), 1700000000
        members.append((extra, vendored))
        out = request.dest / original.name
        # The same bytes every time: the lock holds the archive to its first sha256.
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for member, data in sorted(members, key=lambda m: m[0].name):
                tar.addfile(member, io.BytesIO(data) if data is not None else None)
        with out.open("wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
            gz.write(raw.getvalue())
        return out

    def prepare(self, request: PrepareRequest) -> None:
        package = request.source / request.name.replace("-", "_")
        (package / "_prepared.txt").write_text(f"prepared for {request.version}\\n")

    def build(self, request: BuildRequest) -> Path:
        wheel = request.default()
        with request.log.open("a") as log:
            log.write(f"site plugin: built {wheel.name}\\n")
        return wheel


class Broken:
    """Only a build step, which fails: its error must name the plugin."""

    def build(self, request: BuildRequest) -> Path:
        raise RuntimeError("the site's signing service is down")
'''

ENTRY_POINTS = """\
[affineur.hooks]
vendor = site_hooks:Vendor
broken = site_hooks:Broken
"""


def install_site_plugin(folder: Path) -> Path:
    """The plugin distribution as an installer would leave it in site-packages."""
    folder.mkdir(parents=True)
    (folder / "site_hooks.py").write_text(SITE_PLUGIN)
    dist_info = folder / "site_hooks-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: site-hooks\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS)
    return folder


@pytest.mark.slow
def test_a_site_plugin_fetches_prepares_and_builds_one_package(
    cold_workspace: Workspace, tmp_path: Path
) -> None:
    ws = cold_workspace
    site = install_site_plugin(tmp_path / "site")
    env = {"PYTHONPATH": os.pathsep.join([ws.environ()["PYTHONPATH"], str(site)])}
    ws.collection(["shared==2.0"])

    # A name nothing installs: one line from check, and the lock does not start.
    ws.write("overrides/shared.yaml", "plugin: vendro\n")
    checked = ws.affineur("check", env=env)
    assert checked.returncode != 0
    out = checked.stdout + checked.stderr
    assert "overrides/shared.yaml: plugin: no 'affineur.hooks' plugin named 'vendro'" in out
    assert "installed: broken, vendor" in out
    failed = ws.doit("lock", env=env)
    assert failed.returncode != 0
    assert "plugin named 'vendro' is installed" in failed.stdout + failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr

    # A plugin's own error carries its name, and the build fails cleanly.
    ws.write("overrides/shared.yaml", "plugin: broken\n")
    failed = ws.doit(env=env)
    assert failed.returncode != 0
    out = failed.stdout + failed.stderr
    assert "plugin broken: build failed: RuntimeError: the site's signing service is down" in out

    ws.write("overrides/shared.yaml", "plugin: vendor\n")
    ok(ws.doit(env=env))
    node = ws.nodes()["shared==2.0"]
    archive = ws.root / "build" / "sdists" / node["sdist"]["filename"]
    assert archive.name == f"shared-2.0+vendor.{node['sdist']['sha256'][:12]}.tar.gz"
    assert sha256_file(archive) == node["sdist"]["sha256"]
    assert ws.index is not None
    on_index = {f.filename: f.sha256 for f in ws.index.files("shared")}
    assert node["sdist"]["sha256"] != on_index["shared-2.0.tar.gz"]
    (wheel,) = (ws.root / "dist" / "demo" / "cpu" / "files").glob("shared-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("shared/_vendored.txt") == b"vendored by the site\n"
        assert zf.read("shared/_prepared.txt") == b"prepared for 2.0\n"
    (record,) = (ws.root / "build" / "cache").glob("*/record.json")
    assert json.loads(record.read_text())["host_tools"]["plugin vendor"] == "site-hooks 1.0"
    log = ok(ws.affineur("log", "shared", env=env)).stdout
    assert "site plugin: built shared-2.0-py3-none-any.whl" in log
    assert "ok" in ok(ws.affineur("check", env=env)).stdout

    # Missing from the store, the plugin fetches it again, held to the locked hash.
    archive.unlink()
    ok(ws.doit("download", env=env))
    assert sha256_file(archive) == node["sdist"]["sha256"]


def build_request(tmp_path: Path, default: object) -> BuildRequest:
    return BuildRequest(
        "shared",
        "2.0",
        tmp_path,
        tmp_path,
        {},
        tmp_path / "log",
        default=default,  # type: ignore[arg-type]
    )


def test_plugins_are_found_by_entry_point_and_a_missing_one_is_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(install_site_plugin(tmp_path / "site")))
    load_hooks.cache_clear()
    try:
        assert {"broken", "vendor"} <= set(plugin_names())
        hooks = load_hooks("vendor")
        assert hooks.origin == "site-hooks 1.0"
        with pytest.raises(AffineurError) as caught:
            load_hooks("vendro")
        assert caught.value.message == "no 'affineur.hooks' plugin named 'vendro' is installed"
        assert caught.value.hint is not None and "vendor" in caught.value.hint
        # Broken has no fetch: the default step runs.
        fetched = tmp_path / "shared-2.0.tar.gz"
        request = FetchRequest("shared", "2.0", tmp_path, lambda: fetched)
        assert load_hooks("broken").fetch(request) == fetched
    finally:
        load_hooks.cache_clear()


def test_a_plugin_error_names_the_plugin_and_the_default_error_stays_as_it_is(
    tmp_path: Path,
) -> None:
    class Raises:
        def build(self, request: BuildRequest) -> Path:
            raise ValueError("no signing key")

    class CallsDefault:
        def build(self, request: BuildRequest) -> Path:
            return request.default()

    class ReturnsText:
        def build(self, request: BuildRequest) -> str:
            return "a.whl"

    with pytest.raises(AffineurError) as caught:
        PluginHooks("signer", Raises()).build(build_request(tmp_path, lambda: tmp_path))
    error = caught.value
    assert error.message == "plugin signer: build failed: ValueError: no signing key"
    assert (error.package, error.version, error.stage) == ("shared", "2.0", "build")

    hook_failed = AffineurError("build_wheel failed", stage="hook")

    def failing_default() -> Path:
        raise hook_failed

    with pytest.raises(AffineurError) as caught:
        PluginHooks("calls", CallsDefault()).build(build_request(tmp_path, failing_default))
    assert caught.value is hook_failed

    with pytest.raises(AffineurError, match="plugin text: build returned str, not a path"):
        PluginHooks("text", ReturnsText()).build(build_request(tmp_path, lambda: tmp_path))
