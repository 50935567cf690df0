"""Sdists that are not on the index: fetched from a ``download_source`` URL template.

Some projects publish only wheels, or publish the sdist elsewhere. An override's
``download_source`` (``https://…/${name}-${version}.tar.gz``) says where; the
first lock downloads the file and records its sha256, and every later use checks
the file against that hash exactly as for an index sdist.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.utils import NormalizedName, canonicalize_name

from affineur.config import expand_template
from affineur.errors import AffineurError
from affineur.index._client import IndexClient
from affineur.index._distfile import DistFile, make_file

__all__ = ["UrlSource", "source_url"]


def source_url(template: str, name: str, version: str) -> str:
    return expand_template(
        template, {"name": name, "version": version}, key_path=("download_source",)
    )


class UrlSource:
    """A Fetcher (see :class:`affineur.index._store.SdistStore`) for one URL."""

    def __init__(self, client: IndexClient, url: str, project: str) -> None:
        self.client = client
        self.url = url
        self.project: NormalizedName = canonicalize_name(project)
        self.filename = Path(unquote(urlsplit(url).path)).name
        if not self.filename:
            raise AffineurError(
                f"download_source {url!r} does not end in a file name",
                package=project,
                stage="download",
                key_path=("download_source",),
            )

    def file(self, sha256: str | None = None) -> DistFile:
        found = make_file(self.project, self.filename, self.url, sha256=sha256)
        if found is None or found.kind != "sdist":
            raise AffineurError(
                f"download_source {self.url!r} does not name an sdist of {self.project}",
                package=self.project,
                stage="download",
                key_path=("download_source",),
                hint="the file name must be <name>-<version>.tar.gz (or .zip)",
            )
        return found

    def find_file(self, project: str, filename: str) -> DistFile:
        return self.file()

    def download(self, file: DistFile, dest: Path) -> Path:
        return self.client.download(file, dest)
