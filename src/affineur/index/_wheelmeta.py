"""Reading a wheel's metadata: its .dist-info directory, METADATA and RECORD hashes."""

from __future__ import annotations

import base64
import email.parser
import hashlib
import zipfile
from email.message import Message
from pathlib import Path

from packaging.utils import canonicalize_name

from affineur.errors import AffineurError

__all__ = ["dist_info_dir", "open_wheel", "read_metadata", "record_hash", "requires_dist"]


def record_hash(data: bytes) -> str:
    """A RECORD hash field: ``sha256=`` and the urlsafe base64 digest without padding."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def dist_info_dir(archive: zipfile.ZipFile, wheel: Path) -> str:
    """The name of the wheel's ``.dist-info`` directory (without the slash)."""
    candidates = sorted(
        {
            name.split("/", 1)[0]
            for name in archive.namelist()
            if name.count("/") == 1 and name.split("/", 1)[0].endswith(".dist-info")
        }
    )
    if len(candidates) > 1:
        # Vendored dist-info directories exist; the project's own is the one
        # named like the wheel file.
        project = canonicalize_name(wheel.name.split("-", 1)[0])
        candidates = [
            c
            for c in candidates
            if canonicalize_name(c.removesuffix(".dist-info").rsplit("-", 1)[0]) == project
        ]
    if len(candidates) != 1:
        raise AffineurError(f"{wheel.name} has no single .dist-info directory", file=str(wheel))
    return candidates[0]


def open_wheel(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise AffineurError(f"cannot read wheel {wheel.name}: {exc}", file=str(wheel)) from exc


def read_metadata(wheel: Path) -> Message:
    """The core metadata (``METADATA``) of ``wheel``."""
    with open_wheel(wheel) as archive:
        dist_info = dist_info_dir(archive, wheel)
        try:
            raw = archive.read(f"{dist_info}/METADATA")
        except KeyError as exc:
            raise AffineurError(f"{wheel.name} has no METADATA", file=str(wheel)) from exc
    return email.parser.BytesParser().parsebytes(raw)


def requires_dist(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` entries of ``wheel``, as written."""
    return [str(value) for value in read_metadata(wheel).get_all("Requires-Dist") or []]
