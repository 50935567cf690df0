"""``affineur serve``: the published indexes over HTTP, for pip and uv on other machines.

``dist/<collection>/<variant>/files/`` holds the wheels ``doit`` published; each
becomes ``/<collection>/<variant>/simple/``, answered as PEP 691 JSON or PEP 503
HTML by content negotiation (the ``Accept`` header, or ``?format=``), with the
PEP 658 ``.metadata`` file of every wheel so resolvers need not download wheels
to read their dependencies. When exactly one index exists (or one is chosen
with ``--collection``/``--variant``) it is also at ``/simple/``.

It only reads: every request re-lists the folder (a new ``doit`` run shows at
once, its publish swaps the folder whole) and anything but GET and HEAD is
refused. It binds 127.0.0.1 unless told otherwise, because anyone who can reach
it can read every wheel.
"""

from __future__ import annotations

import hashlib
import html
import json
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from packaging.utils import canonicalize_name

from affineur.errors import AffineurError
from affineur.index import dist_info_dir, open_wheel

__all__ = [
    "HTML_V1",
    "JSON_V1",
    "IndexFiles",
    "Wheel",
    "choose_type",
    "make_server",
]

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
HTML_LEGACY = "text/html"
_LATEST = {
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
}
_OFFERED = (JSON_V1, HTML_V1, HTML_LEGACY)
API_VERSION = "1.1"


def choose_type(accept: str | None, query_format: str | None = None) -> str | None:
    """The content type to answer with (PEP 691), or None when nothing acceptable is offered.

    The highest ``q`` wins; among equals, the order the client listed them.
    No header (or ``*/*``) gets the legacy HTML a browser or an old pip expects.
    """
    if query_format:
        wanted = _LATEST.get(query_format, query_format)
        return wanted if wanted in _OFFERED else None
    if not accept:
        return HTML_LEGACY
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        q = 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        media = _LATEST.get(media, media)
        if media in ("*/*", "text/*"):
            media = HTML_LEGACY
        if media in _OFFERED:
            ranked.append((-q, position, media))
    return min(ranked)[2] if ranked else None


@dataclass(frozen=True)
class Wheel:
    filename: str
    project: str
    version: str
    sha256: str
    size: int
    requires_python: str | None
    metadata: bytes


class IndexFiles:
    """The wheels of one ``files/`` folder, read once per file version (path, size, mtime)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._known: dict[tuple[str, int, int], Wheel] = {}
        self._lock = threading.Lock()

    def _read(self, path: Path) -> Wheel | None:
        stat = path.stat()
        key = (path.name, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._known:
                return self._known[key]
        try:
            with open_wheel(path) as archive:
                raw = archive.read(f"{dist_info_dir(archive, path)}/METADATA")
        except (AffineurError, KeyError):
            return None  # not a wheel we can describe: leave it out rather than break the page
        from email.parser import BytesParser

        meta = BytesParser().parsebytes(raw)
        wheel = Wheel(
            filename=path.name,
            project=canonicalize_name(str(meta["Name"])),
            version=str(meta["Version"]),
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            size=stat.st_size,
            requires_python=str(meta["Requires-Python"]) if meta["Requires-Python"] else None,
            metadata=raw,
        )
        with self._lock:
            self._known[key] = wheel
        return wheel

    def wheels(self) -> list[Wheel]:
        if not self.folder.is_dir():
            return []
        found = (self._read(p) for p in sorted(self.folder.glob("*.whl")) if p.is_file())
        return [w for w in found if w is not None]

    def projects(self) -> dict[str, list[Wheel]]:
        out: dict[str, list[Wheel]] = {}
        for w in self.wheels():
            out.setdefault(w.project, []).append(w)
        return out


def _page(title: str, body: list[str]) -> bytes:
    return (
        "<!DOCTYPE html>\n<html>\n<head>"
        f'<meta name="pypi:repository-version" content="{API_VERSION}">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    ).encode()


def project_list(projects: Mapping[str, list[Wheel]], media: str) -> bytes:
    if media == JSON_V1:
        data = {
            "meta": {"api-version": API_VERSION},
            "projects": [{"name": n} for n in sorted(projects)],
        }
        return json.dumps(data).encode()
    links = [f'<a href="{quote(n)}/">{html.escape(n)}</a><br>' for n in sorted(projects)]
    return _page("Simple index", links)


def project_page(name: str, wheels: list[Wheel], media: str, files_url: str) -> bytes:
    """``files_url``: the relative URL of the files folder, seen from the project page."""
    if media == JSON_V1:
        entries: list[dict[str, Any]] = []
        for w in wheels:
            entry: dict[str, Any] = {
                "filename": w.filename,
                "url": f"{files_url}{quote(w.filename)}",
                "hashes": {"sha256": w.sha256},
                "size": w.size,
                "core-metadata": {"sha256": hashlib.sha256(w.metadata).hexdigest()},
            }
            if w.requires_python:
                entry["requires-python"] = w.requires_python
            entries.append(entry)
        data = {
            "meta": {"api-version": API_VERSION},
            "name": name,
            "files": entries,
            "versions": sorted({w.version for w in wheels}),
        }
        return json.dumps(data).encode()
    links = []
    for w in wheels:
        href = f"{files_url}{quote(w.filename)}#sha256={w.sha256}"
        attrs = (
            f' data-requires-python="{html.escape(w.requires_python)}"' if w.requires_python else ""
        )
        meta = hashlib.sha256(w.metadata).hexdigest()
        attrs += f' data-core-metadata="sha256={meta}" data-dist-info-metadata="sha256={meta}"'
        links.append(f'<a href="{html.escape(href)}"{attrs}>{html.escape(w.filename)}</a><br>')
    return _page(f"Links for {name}", links)


@dataclass(frozen=True)
class Served:
    """What the server offers: every index by (collection, variant), and the one at /simple/."""

    indexes: Mapping[tuple[str, str], IndexFiles]
    default: tuple[str, str] | None


def _handler(served: Served, quiet: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "affineur"

        def log_message(self, format: str, *args: Any) -> None:
            if not quiet:
                sys.stderr.write(f"{self.address_string()} {format % args}\n")

        def _send(
            self, status: int, body: bytes, media: str, extra: Mapping[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Vary", "Accept")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, text: str) -> None:
            self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8")

        def do_HEAD(self) -> None:
            self.do_GET()

        def _refuse(self) -> None:
            self._send(
                405, b"read-only index\n", "text/plain; charset=utf-8", {"Allow": "GET, HEAD"}
            )

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            parts = [p for p in url.path.split("/") if p]
            if not parts:
                return self._root()
            if parts[0] in ("simple", "files") and served.default is not None:
                # /simple/ stands for the default index; its pages link to ../../files/.
                parts = [*served.default, *parts]
            if len(parts) < 3:
                return self._error(404, "not found")
            index = served.indexes.get((parts[0], parts[1]))
            if index is None:
                return self._error(404, f"no index {parts[0]}/{parts[1]}")
            rest = parts[2:]
            query = parse_qs(url.query).get("format", [None])[0]
            if rest[0] == "simple":
                return self._simple(index, rest[1:], url.path, query)
            if rest[0] == "files" and len(rest) == 2:
                return self._file(index, rest[1])
            return self._error(404, "not found")

        def _negotiate(self, query: str | None) -> str | None:
            media = choose_type(self.headers.get("Accept"), query)
            if media is None:
                self._error(406, "acceptable: " + ", ".join(_OFFERED))
            return media

        def _simple(self, index: IndexFiles, rest: list[str], path: str, query: str | None) -> None:
            if not path.endswith("/"):
                # Relative links on the pages only work below a slash-terminated URL.
                return self._send(301, b"", "text/plain", {"Location": path + "/"})
            if len(rest) > 1:
                return self._error(404, "not found")
            media = self._negotiate(query)
            if media is None:
                return None
            projects = index.projects()
            if not rest:
                return self._send(200, project_list(projects, media), media)
            name = canonicalize_name(rest[0])
            if name != rest[0]:
                target = path[: -len(rest[0]) - 1] + name + "/"
                return self._send(301, b"", "text/plain", {"Location": target})
            if name not in projects:
                return self._error(404, f"no project {name}")
            # Links are relative: the page works behind any host name or proxy prefix.
            body = project_page(name, projects[name], media, "../../files/")
            return self._send(200, body, media)

        def _file(self, index: IndexFiles, filename: str) -> None:
            metadata = filename.endswith(".whl.metadata")
            wanted = filename.removesuffix(".metadata") if metadata else filename
            for w in index.wheels():
                if w.filename == wanted:
                    if metadata:
                        return self._send(200, w.metadata, "text/plain; charset=utf-8")
                    body = (index.folder / w.filename).read_bytes()
                    return self._send(200, body, "application/octet-stream")
            return self._error(404, f"no file {filename}")

        def _root(self) -> None:
            links = [
                f'<a href="{quote(c)}/{quote(v)}/simple/">{html.escape(c)}/{html.escape(v)}</a><br>'
                for c, v in sorted(served.indexes)
            ]
            if served.default is not None:
                links.insert(0, '<a href="simple/">simple/</a> (the default index)<br>')
            self._send(200, _page("affineur indexes", links), "text/html; charset=utf-8")

    return Handler


def published(root: Path) -> dict[tuple[str, str], IndexFiles]:
    """Every ``dist/<collection>/<variant>/files/`` folder that doit published."""
    return {
        (p.parent.parent.name, p.parent.name): IndexFiles(p)
        for p in sorted((root / "dist").glob("*/*/files"))
        if p.is_dir() and not p.parent.name.startswith(".")
    }


def make_server(
    served: Served, *, host: str, port: int, quiet: bool = False
) -> ThreadingHTTPServer:
    try:
        server = ThreadingHTTPServer((host, port), _handler(served, quiet))
    except OSError as exc:
        raise AffineurError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another port with --port (0 picks a free one)",
        ) from None
    server.daemon_threads = True
    return server
