"""HTTP for the simple API: streamed GETs, retries with backoff, and size limits.

An index that is overloaded or briefly broken gets a few more attempts, spaced
out exponentially (longer when it says ``Retry-After``); an index that answers
with a refusal, or with far more bytes than a page can hold, gets none. Every
URL in a message is redacted. ``requests`` is imported when a transport is made,
not before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, TypeVar

from affineur.errors import AffineurError, Stage
from affineur.index._pages import Page
from affineur.index._urls import redact_url

if TYPE_CHECKING:
    import requests

__all__ = ["CHUNK", "Http", "Retryable", "transient"]

# Statuses worth another attempt: the index is overloaded or briefly broken.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A Retry-After longer than this is not "a moment": waiting would look like a hang.
_MAX_RETRY_AFTER = 30.0
CHUNK = 1 << 20
# A simple-API page is some KB to a few MB (projects with thousands of files);
# an index that sends more is broken or hostile and must not fill memory.
_MAX_PAGE_BYTES = 256 << 20
_T = TypeVar("_T")


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


class Retryable(Exception):
    """An attempt that failed in a way another attempt may fix."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


def transient() -> tuple[type[Exception], ...]:
    """The ``requests`` errors of a connection that may work on the next attempt."""
    import requests

    return (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
    )


class Http:
    """GETs through one ``requests`` session, retried while they fail transiently."""

    def __init__(
        self,
        *,
        session: requests.Session | None,
        retries: int,
        backoff: float,
        timeout: float,
        sleep: Callable[[float], None],
    ) -> None:
        # Made on the first request: a build whose sources are all at hand never
        # asks the index, and importing requests is most of what a client costs.
        self._session = session
        self._making = threading.Lock()
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.sleep = sleep

    @property
    def session(self) -> requests.Session:
        """The ``requests`` session every GET goes through, one per client."""
        with self._making:
            if self._session is None:
                import requests

                self._session = requests.Session()
            return self._session

    def retrying(self, url: str, stage: Stage, attempt: Callable[[], _T]) -> _T:
        """``attempt()``, repeated with exponential backoff while it fails transiently."""
        for number in range(self.retries + 1):
            try:
                return attempt()
            except Retryable as exc:
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

    def page(self, url: str, accept: str, stage: Stage) -> Page | None:
        """A small document, read whole and retried; None when it does not exist."""
        return self.retrying(url, stage, lambda: self.page_once(url, accept, stage))

    def page_once(self, url: str, accept: str, stage: Stage) -> Page | None:
        """One GET of a small document, read whole; None when it does not exist."""
        with self.request(url, accept, stage) as response:
            if response.status_code in (404, 410):
                return None
            try:
                parts, received = [], 0
                for chunk in response.iter_content(CHUNK):
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
            except transient() as exc:
                raise Retryable(f"connection lost mid-body ({type(exc).__name__})") from exc
            content_type = response.headers.get("Content-Type", "")
            mime = content_type.split(";")[0].strip().lower()
            from requests.utils import get_encoding_from_headers

            charset = get_encoding_from_headers(response.headers)
            return Page(
                response.url or url, mime, body, charset if "charset" in content_type else None
            )

    def request(self, url: str, accept: str, stage: Stage) -> requests.Response:
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
        except transient() as exc:
            raise Retryable(f"cannot connect ({type(exc).__name__})") from exc
        status = response.status_code
        if status < 400 or status in (404, 410):
            return response
        response.close()
        if status in _RETRY_STATUSES:
            raise Retryable(f"HTTP {status}", _retry_after(response))
        if status in (401, 403):
            raise AffineurError(
                f"{redact_url(url)}: HTTP {status}, access denied",
                stage=stage,
                hint="give credentials in the index URL or in ~/.netrc",
            )
        raise AffineurError(f"{redact_url(url)}: HTTP {status}", stage=stage)
