"""A client for the simple repository API: PEP 691 JSON first, PEP 503 HTML as fallback.

The page parsers are pure; :class:`IndexClient` is the only part that touches the
network (which of a project's files may be used is :mod:`affineur.index._usable`'s).
Indexes are asked in order and the first one that knows a project answers for it
alone: merging files across indexes would let anyone who can publish on a later
index shadow an internal project (dependency confusion).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import unquote, urldefrag, urljoin, urlsplit, urlunsplit

from packaging.tags import Tag
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from affineur.atomic import atomic_output
from affineur.errors import AffineurError, Stage
from affineur.index._files import SDIST_SUFFIXES, check_filename
from affineur.limits import TOO_DEEP, too_deep

if TYPE_CHECKING:
    # requests is imported when a client is made: a no-op doit loads this module
    # for its data types and never talks to an index.
    import requests

__all__ = [
    "ACCEPT",
    "DistFile",
    "IndexClient",
    "make_file",
    "parse_html_page",
    "parse_json_page",
    "redact_url",
]

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
# JSON preferred; HTML only when the server cannot do better (PEP 691 negotiation).
ACCEPT = f"{JSON_TYPE}, text/html;q=0.1"

# Statuses worth another attempt: the index is overloaded or briefly broken.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A Retry-After longer than this is not "a moment": waiting would look like a hang.
_MAX_RETRY_AFTER = 30.0
_CHUNK = 1 << 20
# A simple-API page is some KB to a few MB (projects with thousands of files);
# an index that sends more is broken or hostile and must not fill memory.
_MAX_PAGE_BYTES = 256 << 20
# A download stops at the size the index declared; without one, at this. The
# largest wheels (CUDA builds of torch) are a few GB.
_MAX_DOWNLOAD_BYTES = 16 << 30
_T = TypeVar("_T")


@dataclass(frozen=True)
class DistFile:
    """One file an index offers for a project."""

    project: NormalizedName
    filename: str
    url: str
    kind: Literal["sdist", "wheel"]
    version: Version | None
    sha256: str | None = None
    requires_python: str | None = None
    yanked: str | bool = False
    size: int | None = None
    tags: frozenset[Tag] = frozenset()
    # True/False when the index says whether ``<url>.metadata`` exists (PEP 658/714),
    # None when it does not say (then it is worth trying anyway).
    core_metadata: bool | None = None
    core_metadata_sha256: str | None = None
    # PEP 740: the URL of the file's provenance object, when the index has one.
    provenance: str | None = None


# --- URLs --------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` without its user info, fit for messages and logs.

    The whole user info goes, not only the password: tokens are often passed as
    the user name alone.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def _project_url(index_url: str, name: str) -> str:
    return f"{index_url.rstrip('/')}/{canonicalize_name(name)}/"


# --- file names ----------------------------------------------------------------


def _sdist_version(project: NormalizedName, filename: str) -> Version | None:
    """The version in an sdist name, or None when it is not ``project``'s sdist.

    Legacy sdists predate PEP 625 normalisation (``python-dateutil-2.8.2``), so the
    split point is found by matching the project name instead of trusting the last
    dash.
    """
    suffix = next((s for s in SDIST_SUFFIXES if filename.lower().endswith(s)), None)
    if suffix is None:
        return None
    stem = filename[: -len(suffix)]
    for i, char in enumerate(stem):
        if char == "-" and canonicalize_name(stem[:i]) == project:
            try:
                return Version(stem[i + 1 :])
            except InvalidVersion:
                return None
    return None


def make_file(
    project: NormalizedName,
    filename: str,
    url: str,
    *,
    sha256: str | None = None,
    requires_python: str | None = None,
    yanked: str | bool = False,
    size: int | None = None,
    core_metadata: bool | None = None,
    core_metadata_sha256: str | None = None,
    provenance: str | None = None,
) -> DistFile | None:
    """A :class:`DistFile`, or None for files we cannot use (installers, eggs, odd names)."""
    try:
        check_filename(filename)
    except AffineurError:
        return None
    common: dict[str, Any] = {
        "sha256": sha256.lower() if sha256 else None,
        "requires_python": requires_python.strip() if requires_python else None,
        "yanked": yanked,
        "size": size,
        "core_metadata": core_metadata,
        "core_metadata_sha256": core_metadata_sha256,
        "provenance": provenance,
    }
    if filename.lower().endswith(".whl"):
        try:
            name, version, _build, tags = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion):
            return None
        if name != project:
            return None
        return DistFile(project, filename, url, "wheel", version, tags=tags, **common)
    sdist_version = _sdist_version(project, filename)
    if sdist_version is None:
        return None
    return DistFile(project, filename, url, "sdist", sdist_version, **common)


# --- page parsers (pure) ---------------------------------------------------------


def _yanked(value: object) -> str | bool:
    # An empty reason still means yanked; keep the result truthy.
    if isinstance(value, str):
        return value or True
    return bool(value)


def _metadata_flag(value: object) -> tuple[bool | None, str | None]:
    """PEP 691 ``core-metadata``: absent, a bool, or a dict of hashes."""
    if value is None:
        return None, None
    if isinstance(value, Mapping):
        sha = value.get("sha256")
        return True, sha.lower() if isinstance(sha, str) else None
    return bool(value), None


def parse_json_page(page: Mapping[str, Any], page_url: str, project: str) -> list[DistFile]:
    """The usable files of a PEP 691 project page."""
    name = canonicalize_name(project)
    version = str(page.get("meta", {}).get("api-version", "1.0"))
    if version.split(".")[0] != "1":
        raise AffineurError(
            f"{redact_url(page_url)} speaks simple API {version}; affineur knows 1.x",
            package=name,
            stage="index",
        )
    files: list[DistFile] = []
    for entry in page.get("files", []):
        if not isinstance(entry, Mapping) or "filename" not in entry or "url" not in entry:
            continue
        hashes = entry.get("hashes") or {}
        # PEP 714 renamed the key; older servers only send the old one.
        meta = entry.get("core-metadata", entry.get("dist-info-metadata"))
        has_meta, meta_sha = _metadata_flag(meta)
        size = entry.get("size")
        provenance = entry.get("provenance")
        found = make_file(
            name,
            str(entry["filename"]),
            urldefrag(urljoin(page_url, str(entry["url"])))[0],
            sha256=hashes.get("sha256") if isinstance(hashes, Mapping) else None,
            requires_python=entry.get("requires-python") or None,
            yanked=_yanked(entry.get("yanked", False)),
            size=size if isinstance(size, int) else None,
            core_metadata=has_meta,
            core_metadata_sha256=meta_sha,
            provenance=urljoin(page_url, provenance) if isinstance(provenance, str) else None,
        )
        if found is not None:
            files.append(found)
    return files


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # HTMLParser has already unescaped attribute values (&gt;= becomes >=).
        if tag == "a":
            self.anchors.append(dict(attrs))
        elif tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")


def _html_metadata(value: str | None) -> tuple[bool | None, str | None]:
    """PEP 658 ``data-core-metadata``: absent, ``true``, or ``<hash>=<value>``."""
    if value is None:
        return None, None
    algo, sep, digest = value.partition("=")
    if sep and algo.lower() == "sha256":
        return True, digest.lower()
    return value.lower() != "false", None


def parse_html_page(text: str, page_url: str, project: str) -> list[DistFile]:
    """The usable files of a PEP 503 project page."""
    name = canonicalize_name(project)
    parser = _AnchorParser()
    parser.feed(text)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    files: list[DistFile] = []
    for attrs in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url, fragment = urldefrag(urljoin(base, href))
        algo, _, digest = fragment.partition("=")
        filename = unquote(urlsplit(url).path.rpartition("/")[2])
        meta = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        has_meta, meta_sha = _html_metadata(meta)
        yanked = attrs.get("data-yanked")
        provenance = attrs.get("data-provenance")
        found = make_file(
            name,
            filename,
            url,
            sha256=digest if algo.lower() == "sha256" and digest else None,
            requires_python=attrs.get("data-requires-python") or None,
            yanked=False if yanked is None else _yanked(yanked),
            core_metadata=has_meta,
            core_metadata_sha256=meta_sha,
            provenance=urljoin(base, provenance) if provenance else None,
        )
        if found is not None:
            files.append(found)
    return files


# --- the client (I/O) ----------------------------------------------------------------


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _Retryable(Exception):
    """An attempt that failed in a way another attempt may fix."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


def _transient() -> tuple[type[Exception], ...]:
    import requests

    return (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
    )


@dataclass(frozen=True)
class _Page:
    url: str
    content_type: str
    body: bytes
    charset: str | None


class IndexClient:
    """Reads projects and files from an ordered list of simple-API indexes.

    Credentials come from the index URL's user info or from netrc (requests reads
    it); they are sent, never printed: every URL in a message goes through
    :func:`redact_url`. One client may be shared by threads; project pages are
    cached for the client's lifetime, which is one lock or build run.
    """

    def __init__(
        self,
        index_urls: Sequence[str],
        *,
        session: requests.Session | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 30,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not index_urls:
            raise AffineurError("no package index given", stage="config")
        self.index_urls: tuple[str, ...] = tuple(u.rstrip("/") for u in index_urls)
        if session is None:
            import requests

            session = requests.Session()
        self.session = session
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.sleep = sleep
        self._files: dict[tuple[str, str], list[DistFile] | None] = {}
        self._lock = threading.Lock()

    def _where(self) -> str:
        return ", ".join(redact_url(u) for u in self.index_urls)

    # --- projects -------------------------------------------------------------

    def project_files(self, name: str) -> list[DistFile]:
        """Every usable file of ``name`` on the first index that knows it."""
        for index_url in self.index_urls:
            files = self._index_files(index_url, name)
            if files is not None:
                return files
        raise AffineurError(
            f"no such project on {self._where()}",
            package=canonicalize_name(name),
            stage="index",
            hint="check the spelling, or add the index that has it to the variant's 'indexes'",
        )

    def find_file(self, project: str, filename: str) -> DistFile:
        """A locked file found again by name, on any index that has it.

        Unlike :meth:`project_files` this looks past the first index: the caller
        holds the file's hash from the lock, so a file from any index is safe.
        """
        for index_url in self.index_urls:
            for f in self._index_files(index_url, project) or []:
                if f.filename == filename:
                    return f
        raise AffineurError(
            f"{filename} is on none of {self._where()}",
            package=canonicalize_name(project),
            stage="download",
            hint="the file may have been removed upstream; re-lock, or mirror the file",
        )

    def _index_files(self, index_url: str, name: str) -> list[DistFile] | None:
        key = (index_url, canonicalize_name(name))
        with self._lock:
            if key in self._files:
                return self._files[key]
        url = _project_url(index_url, name)
        page = self._retrying(url, "index", lambda: self._page_once(url, ACCEPT, "index"))
        files = None if page is None else _parse_page(page, name)
        with self._lock:
            self._files[key] = files
        return files

    # --- files ------------------------------------------------------------------

    def core_metadata(self, file: DistFile) -> bytes | None:
        """The file's core metadata from ``<url>.metadata`` (PEP 658), or None.

        Tried also when the index does not say: some indexes serve the file without
        announcing it. Skipped only when the index says it is not there.
        """
        if file.core_metadata is False:
            return None
        url = file.url + ".metadata"
        page = self._retrying(url, "download", lambda: self._page_once(url, "*/*", "download"))
        if page is None:
            return None
        if file.core_metadata_sha256:
            actual = hashlib.sha256(page.body).hexdigest()
            if actual != file.core_metadata_sha256:
                raise AffineurError(
                    f"metadata of {file.filename}: expected sha256 "
                    f"{file.core_metadata_sha256}, got {actual}",
                    package=file.project,
                    version=str(file.version) if file.version else None,
                    stage="hash",
                    hint=f"served by {redact_url(url)}",
                )
        return page.body

    def provenance(self, file: DistFile) -> bytes | None:
        """The file's PEP 740 provenance object, or None when the index has none."""
        if not file.provenance:
            return None
        url = file.provenance
        accept = "application/vnd.pypi.integrity.v1+json, application/json;q=0.9"
        page = self._retrying(url, "download", lambda: self._page_once(url, accept, "download"))
        return None if page is None else page.body

    def download(self, file: DistFile, dest: Path) -> Path:
        """Download ``file`` into directory ``dest``; return its path.

        The body goes to a temporary file next to the target and is renamed only
        after its hash checks out, so an interrupted or corrupt download never
        leaves a file that looks complete.
        """
        check_filename(file.filename)
        dest.mkdir(parents=True, exist_ok=True)
        return self._retrying(file.url, "download", lambda: self._download_once(file, dest))

    def _download_once(self, file: DistFile, dest: Path) -> Path:
        target = dest / file.filename
        digest = hashlib.sha256()
        # The file is renamed into place only if the block completes, that is after
        # its hash checked out below.
        with atomic_output(target, durable=True) as out:
            response = self._request(file.url, "*/*", "download")
            with response:
                if response.status_code in (404, 410):
                    raise AffineurError(
                        f"{redact_url(file.url)}: HTTP {response.status_code}, "
                        "although the index lists it",
                        package=file.project,
                        stage="download",
                    )
                limit = file.size if file.size is not None else _MAX_DOWNLOAD_BYTES
                received = 0
                try:
                    for chunk in response.iter_content(_CHUNK):
                        received += len(chunk)
                        if received > limit:
                            said = "declares" if file.size is not None else "allows"
                            raise AffineurError(
                                f"{file.filename}: the server sent more than the "
                                f"{limit} bytes the index {said}; nothing was kept",
                                package=file.project,
                                stage="download",
                                hint=f"downloaded from {redact_url(file.url)}: "
                                "the index or a proxy is broken, or hostile",
                            )
                        digest.update(chunk)
                        out.write(chunk)
                except _transient() as exc:
                    raise _Retryable(f"connection lost mid-body ({type(exc).__name__})") from exc
            actual = digest.hexdigest()
            if file.sha256 and actual != file.sha256:
                raise AffineurError(
                    f"{file.filename}: expected sha256 {file.sha256}, got {actual}",
                    package=file.project,
                    version=str(file.version) if file.version else None,
                    stage="hash",
                    hint=f"downloaded from {redact_url(file.url)}: the server sent other "
                    "bytes than recorded; nothing was kept",
                )
        return target

    # --- HTTP ---------------------------------------------------------------------

    def _retrying(self, url: str, stage: Stage, attempt: Callable[[], _T]) -> _T:
        """``attempt()``, repeated with exponential backoff while it fails transiently."""
        for number in range(self.retries + 1):
            try:
                return attempt()
            except _Retryable as exc:
                if number >= self.retries:
                    raise AffineurError(
                        f"{redact_url(url)}: {exc.reason}, after {number + 1} attempts",
                        stage=stage,
                        hint="the index may be down or unreachable; try again later",
                    ) from exc
                delay = self.backoff * (2**number)
                if exc.wait is not None and exc.wait <= _MAX_RETRY_AFTER:
                    delay = max(delay, exc.wait)
                self.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _page_once(self, url: str, accept: str, stage: Stage) -> _Page | None:
        """One GET of a small document, read whole; None when it does not exist."""
        with self._request(url, accept, stage) as response:
            if response.status_code in (404, 410):
                return None
            try:
                parts, received = [], 0
                for chunk in response.iter_content(_CHUNK):
                    received += len(chunk)
                    if received > _MAX_PAGE_BYTES:
                        raise AffineurError(
                            f"{redact_url(url)}: the page is larger than {_MAX_PAGE_BYTES} "
                            "bytes; refused",
                            stage=stage,
                            hint="is this URL a simple repository index (ending in /simple)?",
                        )
                    parts.append(chunk)
                body = b"".join(parts)
            except _transient() as exc:
                raise _Retryable(f"connection lost mid-body ({type(exc).__name__})") from exc
            content_type = response.headers.get("Content-Type", "")
            mime = content_type.split(";")[0].strip().lower()
            from requests.utils import get_encoding_from_headers

            charset = get_encoding_from_headers(response.headers)
            return _Page(
                response.url or url, mime, body, charset if "charset" in content_type else None
            )

    def _request(self, url: str, accept: str, stage: Stage) -> requests.Response:
        """A streamed response with a final status: 2xx, 404 or 410; others raise."""
        try:
            response = self.session.get(
                url,
                # identity: a server that gzips an archive on the fly would make
                # the bytes we hash differ from the file's recorded hash.
                headers={"Accept": accept, "Accept-Encoding": "identity"},
                timeout=self.timeout,
                stream=True,
            )
        except _transient() as exc:
            raise _Retryable(f"cannot connect ({type(exc).__name__})") from exc
        status = response.status_code
        if status < 400 or status in (404, 410):
            return response
        response.close()
        if status in _RETRY_STATUSES:
            raise _Retryable(f"HTTP {status}", _retry_after(response))
        if status in (401, 403):
            raise AffineurError(
                f"{redact_url(url)}: HTTP {status}, access denied",
                stage=stage,
                hint="give credentials in the index URL or in ~/.netrc",
            )
        raise AffineurError(f"{redact_url(url)}: HTTP {status}", stage=stage)


def _parse_page(page: _Page, name: str) -> list[DistFile]:
    """Dispatch on the Content-Type the server chose, as PEP 691 asks."""
    if page.content_type.endswith("json"):
        try:
            data = json.loads(page.body)
            if too_deep(data):
                raise RecursionError
        except RecursionError:
            raise AffineurError(
                f"{redact_url(page.url)} sent JSON {TOO_DEEP}",
                package=canonicalize_name(name),
                stage="index",
            ) from None
        except ValueError as exc:
            raise AffineurError(
                f"{redact_url(page.url)} sent invalid JSON: {exc}",
                package=canonicalize_name(name),
                stage="index",
            ) from exc
        return parse_json_page(data, page.url, name)
    if page.content_type in ("", "text/html") or page.content_type.endswith("+html"):
        text = page.body.decode(page.charset or "utf-8", errors="replace")
        return parse_html_page(text, page.url, name)
    raise AffineurError(
        f"{redact_url(page.url)} answered with {page.content_type!r}, not a simple-API page",
        package=canonicalize_name(name),
        stage="index",
        hint="is this URL a simple repository index (ending in /simple)?",
    )
