"""Which environment variable names are treated as credentials.

Shared by config checks (``pass_env`` may not name one) and by the hook
environment (such a variable never reaches a build).
"""

from __future__ import annotations

__all__ = ["SECRET_MARKERS", "is_secret_name"]

# Variables whose names contain these never reach a build, even when a
# pattern of the built-in list or of ``pass_env`` admits them (``CMAKE_CREDS``
# through ``CMAKE_*``). Substrings, not words: ``GH_TOKEN``, ``APIKEY`` and
# ``DB_PASSWD`` all count. A few harmless names lose out (``KEYBOARD_LAYOUT``);
# a build that needs one gets it through ``env``, written down for review.
SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CRED", "KEY", "AUTH", "NETRC")


def is_secret_name(name: str) -> bool:
    """Whether a variable's name suggests it holds a credential."""
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)
