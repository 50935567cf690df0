"""The simple-API client against a tiny HTTP server on 127.0.0.1, and its pure parts."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from affineur.config import config_files, default_index_url, index_url_from_files
from affineur.errors import AffineurError
from affineur.index import (
    ACCEPT,
    DistFile,
    IndexClient,
    make_file,
    parse_html_page,
    parse_json_page,
    redact_url,
    usable_files,
)
from affineur.index import _download as download_module
from affineur.index import _http as http_module

JSON = "application/vnd.pypi.simple.v1+json"

# --- a minimal index server ------------------------------------------------------

Response = tuple[int, dict[str, str], bytes]
Handler = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """Serves canned responses by path; a list of responses is played in order."""

    def __init__(self) -> None:
        self.routes: dict[str, Response | list[Response] | Handler] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.seen.append((self.path, dict(self.headers.items())))
                route = outer.routes.get(self.path)
                if callable(route):
                    route(self)
                    return
                if isinstance(route, list):
                    route = route.pop(0) if len(route) > 1 else route[0]
                status, headers, body = route or (404, {}, b"not found")
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def paths(self) -> list[str]:
        return [p for p, _ in self.seen]

    def json_page(self, path: str, files: list[dict[str, object]]) -> None:
        page = {"meta": {"api-version": "1.1"}, "name": "x", "files": files}
        self.routes[path] = (200, {"Content-Type": JSON}, json.dumps(page).encode())


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def client(*urls: str, **kwargs: object) -> tuple[IndexClient, list[float]]:
    sleeps: list[float] = []
    options: dict[str, object] = {"backoff": 0.01, "sleep": sleeps.append, "timeout": 5}
    options.update(kwargs)
    return IndexClient(urls, **options), sleeps  # type: ignore[arg-type]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- redaction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:s3cret@host.example/simple", "https://***@host.example/simple"),
        ("https://tok3n@host.example:8443/simple/", "https://***@host.example:8443/simple/"),
        ("https://host.example/simple", "https://host.example/simple"),
        ("https://a:b@c@host.example/x?q=1", "https://***@host.example/x?q=1"),
    ],
)
def test_redact_url_removes_all_user_info(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# --- page parsing -----------------------------------------------------------------------


def test_json_page_parses_files_and_skips_unusable_ones() -> None:
    page = {
        "meta": {"api-version": "1.1"},
        "files": [
            {
                "filename": "demo_pkg-1.0.tar.gz",
                "url": "../../files/demo_pkg-1.0.tar.gz#sha256=ignored",
                "hashes": {"sha256": "AB" * 32},
                "requires-python": ">=3.8",
                "size": 123,
                "yanked": False,
            },
            {
                "filename": "demo_pkg-1.0-py3-none-any.whl",
                "url": "https://files.example/demo_pkg-1.0-py3-none-any.whl",
                "hashes": {},
                "core-metadata": {"sha256": "cd" * 32},
                "yanked": "broken build",
            },
            {
                "filename": "demo.pkg-0.9-py3-none-any.whl",
                "url": "a.whl",
                "hashes": {},
                "dist-info-metadata": False,
                "yanked": "",
            },
            {"filename": "demo_pkg-1.0.win32.exe", "url": "x.exe", "hashes": {}},
            {"filename": "demo_pkg-1.0-py2.7.egg", "url": "x.egg", "hashes": {}},
            {"filename": "other-1.0-py3-none-any.whl", "url": "o.whl", "hashes": {}},
            {"filename": "demo_pkg-notaversion.tar.gz", "url": "n.tar.gz", "hashes": {}},
            {"filename": "../demo_pkg-1.0.tar.gz", "url": "up.tar.gz", "hashes": {}},
        ],
    }
    files = parse_json_page(page, "https://idx.example/simple/demo-pkg/", "Demo.Pkg")
    assert [f.filename for f in files] == [
        "demo_pkg-1.0.tar.gz",
        "demo_pkg-1.0-py3-none-any.whl",
        "demo.pkg-0.9-py3-none-any.whl",
    ]
    sdist, wheel, old = files
    assert sdist.project == "demo-pkg"
    assert sdist.url == "https://idx.example/files/demo_pkg-1.0.tar.gz"
    assert (sdist.kind, sdist.version, sdist.sha256) == ("sdist", Version("1.0"), "ab" * 32)
    assert (sdist.requires_python, sdist.size, sdist.yanked) == (">=3.8", 123, False)
    assert sdist.core_metadata is None and sdist.tags == frozenset()
    assert wheel.kind == "wheel" and wheel.yanked == "broken build"
    assert (wheel.core_metadata, wheel.core_metadata_sha256) == (True, "cd" * 32)
    assert {str(t) for t in wheel.tags} == {"py3-none-any"}
    # An empty yank reason still means yanked; the PEP 658 flag is read from the old key.
    assert old.yanked is True and old.core_metadata is False


def test_json_page_rejects_unknown_major_api_version() -> None:
    with pytest.raises(AffineurError) as err:
        parse_json_page({"meta": {"api-version": "2.0"}, "files": []}, "http://i/s/x/", "x")
    assert err.value.stage == "index"


def test_legacy_sdist_names_are_split_at_the_project_name() -> None:
    f = make_file(canonicalize_name("python-dateutil"), "python-dateutil-2.8.2.tar.bz2", "u")
    assert f is not None and f.version == Version("2.8.2") and f.kind == "sdist"
    assert make_file(canonicalize_name("dateutil"), "python-dateutil-2.8.2.tar.gz", "u") is None


HTML_PAGE = """<!DOCTYPE html><html><body>
<a href="../../files/demo-1.0.tar.gz#sha256=EF{ef}"
   data-requires-python="&gt;=3.9,&lt;4">demo-1.0.tar.gz</a>
<a href="/files/demo-2.0b1-py3-none-any.whl#md5=00"
   data-yanked="" data-core-metadata="sha256={cm}">w</a>
<a href="demo-0.5.zip" data-dist-info-metadata="true" data-yanked="bad &amp; old">demo-0.5.zip</a>
<a href="demo-0.1.exe">demo-0.1.exe</a>
<a>no href</a>
</body></html>"""


def test_html_page_parses_anchors_and_attributes() -> None:
    text = HTML_PAGE.format(ef="ef" * 31, cm="12" * 32)
    files = parse_html_page(text, "http://idx.example/simple/demo/", "demo")
    assert [f.filename for f in files] == [
        "demo-1.0.tar.gz",
        "demo-2.0b1-py3-none-any.whl",
        "demo-0.5.zip",
    ]
    sdist, wheel, zipped = files
    assert sdist.url == "http://idx.example/files/demo-1.0.tar.gz"
    assert sdist.sha256 == "ef" * 32
    assert sdist.requires_python == ">=3.9,<4"
    assert sdist.yanked is False and sdist.core_metadata is None
    assert wheel.url == "http://idx.example/files/demo-2.0b1-py3-none-any.whl"
    assert wheel.sha256 is None  # only sha256 fragments count
    assert wheel.yanked is True
    assert (wheel.core_metadata, wheel.core_metadata_sha256) == (True, "12" * 32)
    assert zipped.url == "http://idx.example/simple/demo/demo-0.5.zip"
    assert zipped.yanked == "bad & old" and zipped.core_metadata is True


# --- selection ----------------------------------------------------------------------------


def dist(
    version: str, *, yanked: str | bool = False, requires_python: str | None = None
) -> DistFile:
    return DistFile(
        canonicalize_name("demo"),
        f"demo-{version}.tar.gz",
        f"http://i/demo-{version}.tar.gz",
        "sdist",
        Version(version),
        yanked=yanked,
        requires_python=requires_python,
    )


def versions(files: list[DistFile]) -> list[str]:
    return [str(f.version) for f in files]


PY = Version("3.11.7")


def test_usable_files_drops_yanked_unless_pinned_exactly() -> None:
    files = [dist("1.0"), dist("1.1", yanked="oops")]
    assert versions(usable_files(files, python_version=PY, allow_prereleases=False)) == ["1.0"]
    pinned = usable_files(
        files, python_version=PY, allow_prereleases=False, pinned=SpecifierSet("==1.1")
    )
    assert versions(pinned) == ["1.1"]
    ranged = usable_files(
        files, python_version=PY, allow_prereleases=False, pinned=SpecifierSet(">=1.1")
    )
    assert ranged == []
    wildcard = usable_files(
        files, python_version=PY, allow_prereleases=False, pinned=SpecifierSet("==1.*")
    )
    assert versions(wildcard) == ["1.0"]


def test_usable_files_honours_requires_python_and_skips_invalid_specifiers() -> None:
    files = [
        dist("1.0", requires_python=">=3.8"),
        dist("2.0", requires_python=">=3.12"),
        dist("3.0", requires_python="this is not a specifier"),
        dist("4.0", requires_python=">=3.11.7"),
    ]
    assert versions(usable_files(files, python_version=PY, allow_prereleases=False)) == [
        "1.0",
        "4.0",
    ]
    # A pre-release interpreter still satisfies ">=3.8".
    rc = usable_files(files[:1], python_version=Version("3.13.0rc1"), allow_prereleases=False)
    assert versions(rc) == ["1.0"]


def test_usable_files_prerelease_rules() -> None:
    files = [dist("1.0"), dist("2.0b1")]
    assert versions(usable_files(files, python_version=PY, allow_prereleases=False)) == ["1.0"]
    assert versions(usable_files(files, python_version=PY, allow_prereleases=True)) == [
        "1.0",
        "2.0b1",
    ]
    # Only a pre-release satisfies the requirement: it is taken.
    only = usable_files(
        files, python_version=PY, allow_prereleases=False, pinned=SpecifierSet(">=1.5")
    )
    assert versions(only) == ["2.0b1"]
    # The specifier names a pre-release explicitly.
    named = usable_files(
        files, python_version=PY, allow_prereleases=False, pinned=SpecifierSet(">=1.0,!=1.1,<3.0b2")
    )
    assert versions(named) == ["1.0", "2.0b1"]
    yanked_pre = [dist("1.0"), dist("2.0b1", yanked=True)]
    pin = usable_files(
        yanked_pre, python_version=PY, allow_prereleases=False, pinned=SpecifierSet("==2.0b1")
    )
    assert versions(pin) == ["2.0b1"]


# --- the client over HTTP -------------------------------------------------------------------


def test_json_first_with_accept_header_and_cache(server: Server) -> None:
    server.json_page(
        "/simple/demo/",
        [{"filename": "demo-1.0.tar.gz", "url": "/f/demo-1.0.tar.gz", "hashes": {}}],
    )
    c, _ = client(server.url + "/simple/")
    files = c.project_files("Demo")
    assert [f.url for f in files] == [server.url + "/f/demo-1.0.tar.gz"]
    assert c.project_files("demo") is files
    assert server.paths() == ["/simple/demo/"]
    assert server.seen[0][1]["Accept"] == ACCEPT


def test_html_fallback_when_server_only_speaks_html(server: Server) -> None:
    body = b'<a href="demo-1.0.tar.gz#sha256=' + b"aa" * 32 + b'">demo-1.0.tar.gz</a>'
    server.routes["/simple/demo/"] = (200, {"Content-Type": "text/html; charset=utf-8"}, body)
    c, _ = client(server.url + "/simple")
    (f,) = c.project_files("demo")
    assert f.url == server.url + "/simple/demo/demo-1.0.tar.gz"
    assert f.sha256 == "aa" * 32


def test_redirects_are_followed_and_links_resolve_against_the_final_url(server: Server) -> None:
    server.routes["/simple/demo/"] = (301, {"Location": "/mirror/demo/"}, b"")
    server.json_page("/mirror/demo/", [{"filename": "demo-1.0.zip", "url": "demo-1.0.zip"}])
    c, _ = client(server.url + "/simple")
    (f,) = c.project_files("demo")
    assert f.url == server.url + "/mirror/demo/demo-1.0.zip"


def test_unexpected_content_type_is_a_clear_error(server: Server) -> None:
    server.routes["/simple/demo/"] = (200, {"Content-Type": "application/pdf"}, b"%PDF")
    c, _ = client(server.url + "/simple")
    with pytest.raises(AffineurError) as err:
        c.project_files("demo")
    assert err.value.stage == "index" and "application/pdf" in err.value.message


def test_first_index_that_knows_the_project_wins(server: Server) -> None:
    server.json_page("/a/one/", [{"filename": "one-1.0.tar.gz", "url": "one-1.0.tar.gz"}])
    server.json_page("/b/one/", [{"filename": "one-9.0.tar.gz", "url": "one-9.0.tar.gz"}])
    server.json_page("/b/two/", [{"filename": "two-1.0.tar.gz", "url": "two-1.0.tar.gz"}])
    c, _ = client(server.url + "/a", server.url + "/b")
    assert versions(c.project_files("one")) == ["1.0"]  # never merged with /b
    assert versions(c.project_files("two")) == ["1.0"]
    assert "/b/one/" not in server.paths()
    # A locked file is found again on whichever index has it.
    assert c.find_file("one", "one-9.0.tar.gz").url == server.url + "/b/one/one-9.0.tar.gz"
    with pytest.raises(AffineurError) as err:
        c.find_file("one", "one-5.0.tar.gz")
    assert err.value.stage == "download" and "one-5.0.tar.gz" in err.value.message


def test_unknown_project_names_every_index_without_credentials(server: Server) -> None:
    base = server.url.replace("http://", "http://alice:hunter2@")
    c, _ = client(base + "/a/", server.url + "/b")
    with pytest.raises(AffineurError) as err:
        c.project_files("Nope")
    e = err.value
    assert (e.stage, e.package) == ("index", "nope")
    assert e.message == f"no such project on {redact_url(base + '/a')}, {server.url}/b"
    assert "hunter2" not in str(e) and "alice" not in str(e)
    # The credentials were sent, though.
    auth = server.seen[0][1]["Authorization"]
    assert base64.b64decode(auth.split()[1]) == b"alice:hunter2"


def test_retries_on_503_then_succeeds_honouring_retry_after(server: Server) -> None:
    ok = (200, {"Content-Type": JSON}, json.dumps({"files": []}).encode())
    server.routes["/s/demo/"] = [
        (503, {"Retry-After": "2"}, b"busy"),
        (429, {}, b"slow down"),
        ok,
    ]
    c, sleeps = client(server.url + "/s")
    assert c.project_files("demo") == []
    assert len(server.seen) == 3
    assert sleeps == [2.0, 0.02]


def test_gives_up_after_retries_naming_the_url_and_status(server: Server) -> None:
    server.routes["/s/demo/"] = (502, {}, b"bad gateway")
    base = server.url.replace("http://", "http://tok:pw@")
    c, sleeps = client(base + "/s", retries=2)
    with pytest.raises(AffineurError) as err:
        c.project_files("demo")
    assert err.value.stage == "index"
    assert "HTTP 502" in err.value.message and "after 3 attempts" in err.value.message
    assert redact_url(base + "/s/demo/") in err.value.message and "pw" not in str(err.value)
    assert len(sleeps) == 2


def test_connection_refused_is_retried_then_reported() -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = srv.server_address[1]
    srv.server_close()  # nothing listens on this port any more
    c, sleeps = client(f"http://127.0.0.1:{port}/s", retries=1)
    with pytest.raises(AffineurError) as err:
        c.project_files("demo")
    assert "cannot connect" in err.value.message and len(sleeps) == 1


def test_access_denied_is_not_retried(server: Server) -> None:
    server.routes["/s/demo/"] = (401, {}, b"")
    c, sleeps = client(server.url + "/s")
    with pytest.raises(AffineurError) as err:
        c.project_files("demo")
    assert "401" in err.value.message and "netrc" in (err.value.hint or "")
    assert sleeps == []


# --- downloads ---------------------------------------------------------------------------------


def served_file(server: Server, name: str, data: bytes, digest: str | None = None) -> DistFile:
    server.routes[f"/f/{name}"] = (200, {"Content-Type": "application/octet-stream"}, data)
    found = make_file(
        canonicalize_name("demo"), name, f"{server.url}/f/{name}", sha256=digest or sha(data)
    )
    assert found is not None
    return found


def test_download_verifies_and_renames_atomically(server: Server, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)  # several chunks
    f = served_file(server, "demo-1.0.tar.gz", data)
    c, _ = client(server.url)
    path = c.download(f, tmp_path / "dl")
    assert path == tmp_path / "dl" / "demo-1.0.tar.gz"
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["demo-1.0.tar.gz"]
    assert server.seen[0][1]["Accept-Encoding"] == "identity"


def test_hash_mismatch_names_file_and_both_hashes_and_keeps_nothing(
    server: Server, tmp_path: Path
) -> None:
    f = served_file(server, "demo-1.0.tar.gz", b"evil bytes", digest="00" * 32)
    c, _ = client(server.url)
    with pytest.raises(AffineurError) as err:
        c.download(f, tmp_path)
    e = err.value
    assert e.stage == "hash"
    assert "demo-1.0.tar.gz" in e.message
    assert "00" * 32 in e.message and sha(b"evil bytes") in e.message
    assert list(tmp_path.iterdir()) == []


def test_connection_dropped_mid_body_leaves_no_file(server: Server, tmp_path: Path) -> None:
    def truncated(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.write(b"x" * 1000)
        handler.wfile.flush()
        handler.close_connection = True

    server.routes["/f/demo-1.0.tar.gz"] = truncated
    f = make_file(canonicalize_name("demo"), "demo-1.0.tar.gz", server.url + "/f/demo-1.0.tar.gz")
    assert f is not None
    c, sleeps = client(server.url, retries=2)
    with pytest.raises(AffineurError) as err:
        c.download(f, tmp_path)
    assert err.value.stage == "download" and "mid-body" in err.value.message
    assert len(server.seen) == 3 and len(sleeps) == 2
    assert list(tmp_path.iterdir()) == []


def test_download_retries_a_dropped_body_then_succeeds(server: Server, tmp_path: Path) -> None:
    data = b"complete archive"
    attempts: list[int] = []

    def flaky(handler: BaseHTTPRequestHandler) -> None:
        attempts.append(1)
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data if len(attempts) > 1 else data[:3])
        handler.close_connection = True

    f = served_file(server, "demo-1.0.tar.gz", data)
    server.routes["/f/demo-1.0.tar.gz"] = flaky
    c, _ = client(server.url)
    assert c.download(f, tmp_path).read_bytes() == data
    assert len(attempts) == 2


def test_download_refuses_a_file_name_that_is_a_path(tmp_path: Path) -> None:
    bad = DistFile(canonicalize_name("demo"), "../demo-1.0.tar.gz", "http://x", "sdist", None)
    c, _ = client("http://127.0.0.1:9/s")
    with pytest.raises(AffineurError):
        c.download(bad, tmp_path / "d")


# --- PEP 658 metadata -----------------------------------------------------------------------------


META = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: six\n"


def wheel_file(server: Server, **kwargs: object) -> DistFile:
    name = "demo-1.0-py3-none-any.whl"
    found = make_file(canonicalize_name("demo"), name, f"{server.url}/f/{name}", **kwargs)  # type: ignore[arg-type]
    assert found is not None
    return found


def test_core_metadata_tried_when_the_index_does_not_say(server: Server) -> None:
    server.routes["/f/demo-1.0-py3-none-any.whl.metadata"] = (200, {}, META)
    c, _ = client(server.url)
    assert c.core_metadata(wheel_file(server)) == META


def test_core_metadata_verified_against_the_announced_hash(server: Server) -> None:
    server.routes["/f/demo-1.0-py3-none-any.whl.metadata"] = (200, {}, META)
    c, _ = client(server.url)
    good = wheel_file(server, core_metadata=True, core_metadata_sha256=sha(META))
    assert c.core_metadata(good) == META
    bad = wheel_file(server, core_metadata=True, core_metadata_sha256="ff" * 32)
    with pytest.raises(AffineurError) as err:
        c.core_metadata(bad)
    assert err.value.stage == "hash" and sha(META) in err.value.message


def test_core_metadata_absent_or_declined(server: Server) -> None:
    c, _ = client(server.url)
    assert c.core_metadata(wheel_file(server)) is None  # 404
    assert c.core_metadata(wheel_file(server, core_metadata=False)) is None
    assert server.paths() == ["/f/demo-1.0-py3-none-any.whl.metadata"]


# --- pip's configured index -----------------------------------------------------------------------


def test_pip_index_url_environment_variable_wins(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = http://from-file.invalid/simple\n")
    env = {"PIP_INDEX_URL": "http://from-env.invalid/simple//", "PIP_CONFIG_FILE": str(conf)}
    assert default_index_url(env) == "http://from-env.invalid/simple"


def test_index_url_from_pip_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = http://global.invalid/simple/\n"
        "extra-index-url = http://extra.invalid/simple\n"
        "[install]\nindex_url = http://install.invalid/100%25/simple/\n"
    )
    env = {"PIP_CONFIG_FILE": str(conf), "HOME": str(tmp_path / "home")}
    assert default_index_url(env) == "http://install.invalid/100%25/simple"


def test_later_config_files_override_earlier_ones_per_section(tmp_path: Path) -> None:
    first, second, third = (tmp_path / n for n in ("a.conf", "b.conf", "c.conf"))
    first.write_text("[install]\nindex-url = http://first-install.invalid\n")
    second.write_text("[global]\nindex-url = http://second-global.invalid\n")
    third.write_text("[global]\nindex-url =\n")  # empty values are ignored, as pip does
    files = [first, second, third, tmp_path / "missing.conf"]
    # A command section beats [global] whichever file it comes from.
    assert index_url_from_files(files) == "http://first-install.invalid"
    assert index_url_from_files([second, third]) == "http://second-global.invalid"


def test_config_file_order_follows_pip(tmp_path: Path) -> None:
    conf = tmp_path / "env.conf"
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_DIRS": str(tmp_path / "xdg")}
    files = config_files(env)
    assert files[0] == tmp_path / "xdg" / "pip" / "pip.conf"
    assert home / ".pip" / "pip.conf" in files
    assert files.index(home / ".pip" / "pip.conf") < files.index(home / ".config/pip/pip.conf")
    # An existing PIP_CONFIG_FILE comes last and hides the user's files.
    conf.write_text("")
    with_env = config_files({**env, "PIP_CONFIG_FILE": str(conf)})
    assert with_env[-1] == conf
    assert home / ".pip" / "pip.conf" not in with_env
    assert config_files({**env, "PIP_CONFIG_FILE": os.devnull}) == []


def test_broken_pip_config_is_a_config_error(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("index-url = no section header\n")
    with pytest.raises(AffineurError) as err:
        default_index_url({"PIP_CONFIG_FILE": str(conf)})
    assert err.value.stage == "config" and err.value.file == str(conf)


def test_falls_back_to_pips_own_default() -> None:
    from pip._internal.models.index import PyPI

    url = default_index_url({"PIP_CONFIG_FILE": os.devnull})
    assert url == PyPI.simple_url.rstrip("/")
    assert not url.endswith("/")


def test_a_download_stops_at_the_size_the_index_declared(server: Server, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    served = served_file(server, "demo-1.0.tar.gz", data)
    declared = replace(served, size=1 << 20)
    c, _ = client(server.url)
    with pytest.raises(AffineurError) as err:
        c.download(declared, tmp_path)
    assert err.value.message == (
        "demo-1.0.tar.gz: the server sent more than the 1048576 bytes the index declares; "
        "nothing was kept"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_endless_download_or_page_is_cut_off(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download_module, "_MAX_DOWNLOAD_BYTES", 2 << 20)
    monkeypatch.setattr(http_module, "_MAX_PAGE_BYTES", 2 << 20)

    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", JSON)
        handler.end_headers()
        with contextlib.suppress(OSError):
            while True:
                handler.wfile.write(b" " * 65536)

    server.routes["/f/demo-1.0.tar.gz"] = endless
    server.routes["/simple/demo/"] = endless
    f = make_file(canonicalize_name("demo"), "demo-1.0.tar.gz", server.url + "/f/demo-1.0.tar.gz")
    assert f is not None
    c, _ = client(server.url + "/simple")
    with pytest.raises(AffineurError, match="more than the 2097152 bytes the index allows"):
        c.download(f, tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AffineurError, match="the page is larger than 2097152 bytes; refused"):
        c.project_files("demo")


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a": ' * 100 + b"1" + b"}" * 100])
def test_a_page_nested_past_any_need_is_refused(server: Server, body: bytes) -> None:
    server.routes["/simple/demo/"] = (200, {"Content-Type": JSON}, body)
    c, _ = client(server.url + "/simple")
    with pytest.raises(AffineurError) as err:
        c.project_files("demo")
    assert err.value.message.endswith(
        "/simple/demo/ sent JSON nested more than 64 levels deep; refused"
    )
