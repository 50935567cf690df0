"""A client for the simple repository API: PEP 691 JSON first, PEP 503 HTML as fallback.

:class:`IndexClient` answers the questions the stages ask of indexes: a project's
files, a locked file found again, its core metadata and provenance, its bytes.
The parts live beside it: the HTTP transport with its retries
(:mod:`affineur.index._http`), the pure page parsers (:mod:`affineur.index._pages`),
downloads (:mod:`affineur.index._download`); which of a project's files may be
used is :mod:`affineur.index._usable`'s. Indexes are asked in order and the
first one that knows a project answers for it alone: merging files across
indexes would let anyone who can publish on a later index shadow an internal
project (dependency confusion).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from affineur.errors import AffineurError
from affineur.index._distfile import DistFile
from affineur.index._download import download
from affineur.index._http import Http
from affineur.index._pages import parse_page
from affineur.index._urls import project_url, redact_url

if TYPE_CHECKING:
    # requests is imported when a client is made: a no-op doit never talks to an index.
    import requests

__all__ = ["ACCEPT", "IndexClient"]

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
# JSON preferred; HTML only when the server cannot do better (PEP 691 negotiation).
ACCEPT = f"{JSON_TYPE}, text/html;q=0.1"


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
        self.http = Http(
            session=session, retries=retries, backoff=backoff, timeout=timeout, sleep=sleep
        )
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
        url = project_url(index_url, name)
        page = self.http.page(url, ACCEPT, "index")
        files = None if page is None else parse_page(page, name)
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
        page = self.http.page(url, "*/*", "download")
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
        page = self.http.page(url, accept, "download")
        return None if page is None else page.body

    def download(self, file: DistFile, dest: Path) -> Path:
        """Download ``file`` into directory ``dest``; return its path.

        Checked against the file's size and sha256 before it appears there (see
        :mod:`affineur.index._download`).
        """
        return download(self.http, file, dest)
