"""Index URLs: where a project's page is, and how a URL is shown without its credentials.

Index URLs may carry a token in their user info; every URL that reaches a message
or a log goes through :func:`redact_url` first.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from packaging.utils import canonicalize_name

__all__ = ["project_url", "redact_url"]


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


def project_url(index_url: str, name: str) -> str:
    return f"{index_url.rstrip('/')}/{canonicalize_name(name)}/"
