"""Downloading a dist file: streamed, size-capped, hash-checked, then renamed into place.

The body goes to a temporary file next to the target and is renamed only after
its hash checks out, so an interrupted or corrupt download never leaves a file
that looks complete, and a server cannot send more than the index declared.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from affineur.atomic import atomic_output
from affineur.errors import AffineurError
from affineur.index._distfile import DistFile
from affineur.index._files import check_filename
from affineur.index._http import CHUNK, Http, Retryable, transient
from affineur.index._urls import redact_url

__all__ = ["download"]

# A download stops at the size the index declared; without one, at this. The
# largest wheels (CUDA builds of torch) are a few GB.
_MAX_DOWNLOAD_BYTES = 16 << 30


def download(http: Http, file: DistFile, dest: Path) -> Path:
    """Download ``file`` into directory ``dest``; return its path."""
    check_filename(file.filename)
    dest.mkdir(parents=True, exist_ok=True)
    return http.retrying(file.url, "download", lambda: _download_once(http, file, dest))


def _download_once(http: Http, file: DistFile, dest: Path) -> Path:
    target = dest / file.filename
    digest = hashlib.sha256()
    # The file is renamed into place only if the block completes, that is after
    # its hash checked out below.
    with atomic_output(target, durable=True) as out:
        response = http.request(file.url, "*/*", "download")
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
                for chunk in response.iter_content(CHUNK):
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
            except transient() as exc:
                raise Retryable(f"connection lost mid-body ({type(exc).__name__})") from exc
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
