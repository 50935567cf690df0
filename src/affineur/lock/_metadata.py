"""Core metadata parsing, and the rule for when an sdist's PKG-INFO can be trusted.

PEP 643: from Metadata-Version 2.2 on, a field an sdist does not list as
``Dynamic`` is exactly what the built wheel will say. Before 2.2, or when
``Requires-Dist`` is dynamic, the sdist's PKG-INFO says nothing reliable about
dependencies and another source must be asked.
"""

from __future__ import annotations

from email.message import Message
from email.parser import BytesParser

from packaging.version import InvalidVersion, Version

__all__ = ["metadata_version", "parse_metadata", "requires_dist", "static_requires_dist"]


def parse_metadata(raw: bytes) -> Message:
    return BytesParser().parsebytes(raw, headersonly=True)


def requires_dist(raw: bytes) -> list[str]:
    return [str(v) for v in parse_metadata(raw).get_all("Requires-Dist") or []]


def metadata_version(raw: bytes) -> Version | None:
    """The project's Version field (None when missing or not PEP 440)."""
    try:
        return Version(str(parse_metadata(raw).get("Version", "")))
    except InvalidVersion:
        return None


def static_requires_dist(pkg_info: bytes) -> list[str] | None:
    """The sdist's dependencies when PEP 643 makes them static, else None."""
    msg = parse_metadata(pkg_info)
    try:
        metadata_version = Version(str(msg.get("Metadata-Version", "1.0")))
    except InvalidVersion:
        return None
    if metadata_version < Version("2.2"):
        return None
    dynamic = {str(v).strip().lower() for v in msg.get_all("Dynamic") or []}
    if "requires-dist" in dynamic:
        return None
    return [str(v) for v in msg.get_all("Requires-Dist") or []]
