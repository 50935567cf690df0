"""The one exception affineur raises, carrying structured fields.

Everything below the command line raises with fields filled in, so tests can
assert on data, not on wording. :func:`error_text` is the one place that turns an
error into text (one ``error:`` line, the causes indented under it, an optional
``hint:`` line); the ``affineur`` command, the doit adapter and the reports all
use it, so a cause is never shown in one place and dropped in another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Stage = Literal[
    "config",
    "resolve",
    "download",
    "hash",
    "unpack",
    "patch",
    "discovery",
    "build-env",
    "hook",
    "build",
    "metadata-drift",
    "verify",
    "isolation",
    "timeout",
    "cycle",
    "lock",
    "index",
    "internal",
]

__all__ = ["AffineurError", "Stage", "error_text"]


@dataclass
class AffineurError(Exception):
    """An error a user can act on.

    ``message`` says what went wrong in one line; ``hint`` says what to do about it.
    The optional fields locate the problem: a config ``file`` and ``key_path``
    (``("variants", "cuda", "env")``), a ``package``/``version``, the ``stage`` of
    the pipeline, and ``causes`` for errors that aggregate several problems.
    """

    message: str
    hint: str | None = None
    file: str | None = None
    key_path: Sequence[str | int] = ()
    line: int | None = None
    package: str | None = None
    version: str | None = None
    stage: Stage | None = None
    causes: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.one_line()

    def location(self) -> str:
        """``file:line: key.path`` for the parts that are known."""
        parts: list[str] = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.key_path:
            parts.append(".".join(str(k) for k in self.key_path))
        return ": ".join(parts)

    def one_line(self) -> str:
        where = self.location()
        subject = ""
        if self.package:
            subject = f"{self.package}=={self.version}: " if self.version else f"{self.package}: "
        text = f"{where}: {subject}{self.message}" if where else f"{subject}{self.message}"
        return text


def error_text(exc: AffineurError, *, prefix: str = "error: ") -> str:
    """``error: <where>: <what>``, each cause on an indented line, then ``hint: ...``.

    ``prefix`` is for callers whose output already says "error" (doit prints
    ``ERROR:`` before a dodo-loading failure). No trailing newline.
    """
    lines = [f"{prefix}{exc.one_line()}"]
    lines += [f"  {cause}" for cause in exc.causes]
    if exc.hint:
        lines.append(f"hint: {exc.hint}")
    return "\n".join(lines)
