"""The simple API's project pages, parsed: PEP 691 JSON and PEP 503 HTML.

Pure: a page's bytes and URL in, the usable :class:`DistFile` entries out, so
both formats are tested without a server. Which format a page is follows the
Content-Type the server chose, as PEP 691 asks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from packaging.utils import canonicalize_name

from affineur.errors import AffineurError
from affineur.index._distfile import DistFile, make_file
from affineur.index._urls import redact_url
from affineur.limits import TOO_DEEP, too_deep

__all__ = ["Page", "parse_html_page", "parse_json_page", "parse_page"]


@dataclass(frozen=True)
class Page:
    """A project page as the server sent it: its final URL, media type, bytes and charset."""

    url: str
    content_type: str
    body: bytes
    charset: str | None


def parse_page(page: Page, name: str) -> list[DistFile]:
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
