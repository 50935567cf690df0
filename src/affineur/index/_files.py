"""Dist file names and hashes: the rules every stage applies to a file it stores or names."""

from __future__ import annotations

import hashlib
from pathlib import Path

from affineur.errors import AffineurError

__all__ = ["SDIST_SUFFIXES", "check_filename", "sha256_file"]

# the others appear on older releases still in use.
# ".tar" is what a git source is archived as (see _git.py).
SDIST_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip", ".tar")

# PKG-INFO is a few kilobytes; a huge one is a decompression bomb, not metadata.
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The hex sha256 of ``path``, read in chunks so big archives cost no memory."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_filename(filename: str) -> str:
    """``filename`` if it is a plain file name; an index or lock could say otherwise.

    The name becomes a path under our directories, so a separator or ``..`` in it
    would write anywhere.
    """
    if (
        not filename
        or filename in (".", "..")
        or "/" in filename
        or "\\" in filename
        or "\0" in filename
        or filename.startswith(".")
    ):
        raise AffineurError(f"refusing the file name {filename!r}", stage="download")
    return filename
