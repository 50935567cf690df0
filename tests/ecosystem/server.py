"""A local package index on 127.0.0.1: PEP 691 JSON, PEP 503 HTML, PEP 658 metadata files.

It behaves like the index the build machines reach: JSON file entries carry ``hashes``,
``requires-python``, ``size``, ``upload-time`` and ``yanked`` but no ``core-metadata`` key,
although ``<file url>.metadata`` is served for wheels (both are switches). Every request is
logged so tests can assert that no network was used, failures can be injected for retry
tests, and releases can be added or replaced while it runs.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import socket
import struct
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from packaging.version import Version

from tests.ecosystem.projects import FakeProject, normalize
from tests.ecosystem.sdist import BuiltRelease, build_release, wheel_metadata

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
HTML_LEGACY = "text/html"
UPLOAD_TIME = "2024-01-01T00:00:00.000000Z"

Failure = int | Literal["reset"]
"""An injected failure: an HTTP status to answer, or ``"reset"`` to drop the connection."""


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    """The request target as sent, query included."""
    accept: str | None
    status: int | Literal["reset"]


@dataclass(frozen=True)
class IndexFile:
    """One downloadable file of a project, with the data the simple API reports about it."""

    project: str
    """Canonical project name."""
    version: str
    filename: str
    data: bytes
    requires_python: str | None = None
    yanked: bool | str = False
    metadata: bytes | None = None
    """PEP 658 core metadata (wheels only)."""
    provenance: bytes | None = None
    """A PEP 740 provenance object, served at ``/provenance/<project>/<file>``."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def metadata_sha256(self) -> str | None:
        return None if self.metadata is None else hashlib.sha256(self.metadata).hexdigest()


@dataclass
class _Injected:
    prefix: str
    remaining: int
    failure: Failure


@dataclass
class _State:
    files: dict[str, dict[str, IndexFile]] = field(default_factory=dict)
    injected: list[_Injected] = field(default_factory=list)


class FakeIndex:
    """A running (after :meth:`start`) local index. Use as a context manager or fixture.

    ``core_metadata_key`` adds PEP 714 ``core-metadata`` (and the older
    ``data-dist-info-metadata``) to JSON entries and HTML links; ``serve_metadata``
    controls whether ``<wheel url>.metadata`` answers at all; ``absolute_urls=False``
    makes file links relative to the project page, as some mirrors do.
    """

    def __init__(
        self,
        *,
        core_metadata_key: bool = False,
        serve_metadata: bool = True,
        absolute_urls: bool = True,
    ) -> None:
        self.core_metadata_key = core_metadata_key
        self.serve_metadata = serve_metadata
        self.absolute_urls = absolute_urls
        self.requests: list[LoggedRequest] = []
        self._state = _State()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeIndex:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        # A short poll interval keeps stop() (and so every fixture teardown) fast.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-index"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeIndex:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("the fake index is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        """The simple API root, ``http://127.0.0.1:PORT/simple/``: what an index URL is."""
        return f"{self.root_url}/simple/"

    def project_url(self, name: str) -> str:
        return f"{self.url}{normalize(name)}/"

    def file_url(self, filename: str) -> str:
        for project, files in self._snapshot().items():
            if filename in files:
                return f"{self.root_url}{_file_path(project, filename)}"
        raise KeyError(filename)

    # --- content -----------------------------------------------------------------------

    def add(self, *items: FakeProject | BuiltRelease | IndexFile) -> None:
        """Publish releases, building a :class:`FakeProject` on the spot.

        A file with a name already served replaces it, so a test can swap a release.
        """
        for item in items:
            for index_file in _index_files(item):
                with self._lock:
                    project_files = self._state.files.setdefault(index_file.project, {})
                    project_files[index_file.filename] = index_file

    def add_all(self, items: Iterable[FakeProject | BuiltRelease | IndexFile]) -> None:
        self.add(*items)

    def remove(self, name: str, version: str | None = None) -> None:
        """Drop a project, or one version of it."""
        canonical = normalize(name)
        with self._lock:
            if version is None:
                self._state.files.pop(canonical, None)
                return
            files = self._state.files.get(canonical, {})
            for filename in [f for f, entry in files.items() if entry.version == version]:
                del files[filename]

    def yank(self, name: str, version: str, reason: bool | str = True) -> None:
        """Yank every file of one version; ``reason`` may be a string, or False to unyank."""
        canonical = normalize(name)
        with self._lock:
            files = self._state.files.get(canonical, {})
            for filename, entry in list(files.items()):
                if entry.version == version:
                    files[filename] = dataclasses.replace(entry, yanked=reason)

    def attest(
        self, name: str, version: str, publisher: dict[str, str], *, sha256: str | None = None
    ) -> None:
        """Serve PEP 740 provenance by ``publisher`` for the sdists of one version.

        ``sha256`` makes the attestation name other bytes than the file's (a forgery).
        """
        canonical = normalize(name)
        with self._lock:
            files = self._state.files.get(canonical, {})
            for filename, entry in list(files.items()):
                if entry.version == version and not filename.endswith(".whl"):
                    document = pep740_provenance(filename, sha256 or entry.sha256, publisher)
                    files[filename] = dataclasses.replace(entry, provenance=document)

    def projects(self) -> list[str]:
        return sorted(self._snapshot())

    def files(self, name: str) -> list[IndexFile]:
        return sorted(self._snapshot().get(normalize(name), {}).values(), key=lambda f: f.filename)

    # --- request log and failure injection --------------------------------------------

    def fail_next(self, path_prefix: str, count: int = 1, status: Failure = 503) -> None:
        """Answer the next ``count`` requests whose path starts with ``path_prefix`` with
        ``status`` (or drop the connection for ``"reset"``). The prefix is a path such as
        ``/simple/multi/`` or ``/files/``; a full URL is accepted too."""
        prefix = urlsplit(path_prefix).path or path_prefix
        with self._lock:
            self._state.injected.append(_Injected(prefix, count, status))

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def requested_paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    # --- internals used by the handler ------------------------------------------------

    def _snapshot(self) -> dict[str, dict[str, IndexFile]]:
        with self._lock:
            return {p: dict(files) for p, files in self._state.files.items()}

    def _take_failure(self, path: str) -> Failure | None:
        with self._lock:
            for injected in self._state.injected:
                if injected.remaining > 0 and path.startswith(injected.prefix):
                    injected.remaining -= 1
                    return injected.failure
        return None

    def _log(self, request: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(request)


def _index_files(item: FakeProject | BuiltRelease | IndexFile) -> Iterator[IndexFile]:
    if isinstance(item, IndexFile):
        yield item
        return
    if isinstance(item, FakeProject):
        # Files are read into memory before the temporary directory goes away.
        with tempfile.TemporaryDirectory(prefix="fake-index-") as tmp:
            yield from _index_files(build_release(item, Path(tmp)))
        return
    project = item.project
    for path in (item.sdist, item.wheel):
        if path is None:
            continue
        data = path.read_bytes()
        yield IndexFile(
            project=project.canonical_name,
            version=project.version,
            filename=path.name,
            data=data,
            requires_python=project.requires_python,
            yanked=project.yanked,
            metadata=wheel_metadata(data) if path.suffix == ".whl" else None,
        )


def _file_path(project: str, filename: str) -> str:
    return f"/files/{project}/{filename}"


def pep740_provenance(filename: str, sha256: str, publisher: dict[str, str]) -> bytes:
    """A PEP 740 provenance object with one attestation by ``publisher``.

    Shaped like an index's; the certificate, log entry and signature are
    placeholders (nothing here is a Sigstore authority).
    """
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": filename, "digest": {"sha256": sha256}}],
        "predicateType": "urn:affineur:test:publish-attestation:v1",
        "predicate": None,
    }
    attestation = {
        "version": 1,
        "verification_material": {
            "certificate": base64.b64encode(b"test certificate").decode(),
            "transparency_entries": [{"logIndex": "1", "kindVersion": {"kind": "dsse"}}],
        },
        "envelope": {
            "statement": base64.b64encode(json.dumps(statement).encode()).decode(),
            "signature": base64.b64encode(b"test signature").decode(),
        },
    }
    bundle = {"publisher": dict(publisher), "attestations": [attestation]}
    return json.dumps({"version": 1, "attestation_bundles": [bundle]}).encode()


def _negotiate(accept: str | None, query_format: str | None) -> str:
    """Pick the response type per PEP 691; anything unrecognised gets the PEP 503 default."""
    if query_format in (JSON_V1, HTML_V1, HTML_LEGACY):
        return query_format
    best, best_q = HTML_LEGACY, -1.0
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        chosen = {JSON_V1: JSON_V1, HTML_V1: HTML_V1, HTML_LEGACY: HTML_LEGACY, "*/*": HTML_LEGACY}
        if media in chosen and q > 0 and q > best_q:
            best, best_q = chosen[media], q
    return best


class _Page:
    """Renders the simple API for one index state (pure: no sockets)."""

    def __init__(self, index: FakeIndex, files: dict[str, dict[str, IndexFile]]) -> None:
        self.index = index
        self.files = files

    def href(self, entry: IndexFile) -> str:
        path = _file_path(entry.project, entry.filename)
        if self.index.absolute_urls:
            return f"{self.index.root_url}{path}"
        return f"../..{path}"

    def root_json(self) -> bytes:
        projects = [{"name": name} for name in sorted(self.files)]
        return _json({"meta": {"api-version": "1.1"}, "projects": projects})

    def root_html(self) -> bytes:
        links = "".join(f'    <a href="{name}/">{name}</a><br />\n' for name in sorted(self.files))
        return _html("Simple index", links)

    def project_json(self, project: str) -> bytes:
        entries = sorted(self.files[project].values(), key=lambda f: f.filename)
        payload = {
            "meta": {"api-version": "1.1"},
            "name": project,
            "versions": sorted({e.version for e in entries}, key=Version),
            "files": [self.file_json(e) for e in entries],
        }
        return _json(payload)

    def file_json(self, entry: IndexFile) -> dict[str, object]:
        data: dict[str, object] = {
            "filename": entry.filename,
            "url": self.href(entry),
            "hashes": {"sha256": entry.sha256},
            "requires-python": entry.requires_python,
            "size": len(entry.data),
            "upload-time": UPLOAD_TIME,
            "yanked": entry.yanked,
        }
        if self.index.core_metadata_key and entry.metadata is not None:
            data["core-metadata"] = {"sha256": entry.metadata_sha256}
            data["data-dist-info-metadata"] = {"sha256": entry.metadata_sha256}
        if entry.provenance is not None:
            data["provenance"] = self.provenance_url(entry)
        return data

    def provenance_url(self, entry: IndexFile) -> str:
        return f"{self.index.root_url}/provenance/{entry.project}/{entry.filename}"

    def project_html(self, project: str) -> bytes:
        links = []
        for entry in sorted(self.files[project].values(), key=lambda f: f.filename):
            attrs = f' href="{html.escape(self.href(entry))}#sha256={entry.sha256}"'
            if entry.requires_python:
                attrs += f' data-requires-python="{html.escape(entry.requires_python)}"'
            if entry.yanked is not False:
                reason = entry.yanked if isinstance(entry.yanked, str) else ""
                attrs += f' data-yanked="{html.escape(reason)}"'
            if self.index.core_metadata_key and entry.metadata is not None:
                value = f"sha256={entry.metadata_sha256}"
                attrs += f' data-core-metadata="{value}" data-dist-info-metadata="{value}"'
            if entry.provenance is not None:
                attrs += f' data-provenance="{html.escape(self.provenance_url(entry))}"'
            links.append(f"    <a{attrs}>{html.escape(entry.filename)}</a><br />\n")
        return _html(f"Links for {project}", "".join(links))


def _json(payload: object) -> bytes:
    return json.dumps(payload, indent=1, sort_keys=True).encode()


def _html(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.1">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}  </body>\n</html>\n"
    ).encode()


def _handler_for(index: FakeIndex) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle on, a keep-alive client
        # waits for its delayed ACK (40 ms) before the body of every answer.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            """Silence stderr; requests are logged as data on the index instead."""

        def do_GET(self) -> None:
            self.answer(head=False)

        def do_HEAD(self) -> None:
            self.answer(head=True)

        def answer(self, *, head: bool) -> None:
            accept = self.headers.get("Accept")
            path = urlsplit(self.path).path
            failure = index._take_failure(path)
            if failure == "reset":
                index._log(LoggedRequest(self.command, self.path, accept, "reset"))
                self.reset()
                return
            if failure is not None:
                status, headers, body = failure, {"Content-Type": "text/plain"}, b"injected\n"
            else:
                status, headers, body = self.route(path, accept)
            index._log(LoggedRequest(self.command, self.path, accept, status))
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def reset(self) -> None:
            # SO_LINGER with a zero timeout makes close() send RST: a "connection reset".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def route(self, path: str, accept: str | None) -> tuple[int, dict[str, str], bytes]:
            query = parse_qs(urlsplit(self.path).query)
            page = _Page(index, index._snapshot())
            kind = _negotiate(accept, query.get("format", [""])[0] or None)
            content_type = {"Content-Type": kind + ("; charset=utf-8" if "html" in kind else "")}
            if path in ("/simple", "/simple/"):
                if path == "/simple":
                    return 301, {"Location": "/simple/"}, b""
                body = page.root_json() if kind == JSON_V1 else page.root_html()
                return 200, content_type, body
            if path.startswith("/simple/"):
                name = path[len("/simple/") :].rstrip("/")
                canonical = normalize(name)
                if "/" in name or canonical not in page.files:
                    return 404, {"Content-Type": "text/plain"}, b"no such project\n"
                if name != canonical or not path.endswith("/"):
                    # PEP 503: non-normalized names (and a missing slash) redirect.
                    return 301, {"Location": f"/simple/{canonical}/"}, b""
                if kind == JSON_V1:
                    return 200, content_type, page.project_json(canonical)
                return 200, content_type, page.project_html(canonical)
            if path.startswith("/files/"):
                return self.file(path, page)
            if path.startswith("/provenance/"):
                parts = path.split("/")
                entry = page.files.get(parts[2], {}).get(parts[3]) if len(parts) == 4 else None
                if entry is None or entry.provenance is None:
                    return 404, {"Content-Type": "text/plain"}, b"no provenance\n"
                return 200, {"Content-Type": "application/json"}, entry.provenance
            return 404, {"Content-Type": "text/plain"}, b"not found\n"

        def file(self, path: str, page: _Page) -> tuple[int, dict[str, str], bytes]:
            parts = path.split("/")
            if len(parts) != 4:
                return 404, {"Content-Type": "text/plain"}, b"not found\n"
            project, filename = parts[2], parts[3]
            files = page.files.get(project, {})
            if filename in files:
                return 200, {"Content-Type": "application/octet-stream"}, files[filename].data
            wheel = filename.removesuffix(".metadata")
            entry = files.get(wheel)
            if (
                filename.endswith(".metadata")
                and entry is not None
                and entry.metadata is not None
                and index.serve_metadata
            ):
                return 200, {"Content-Type": "application/octet-stream"}, entry.metadata
            return 404, {"Content-Type": "text/plain"}, b"not found\n"

    return Handler
