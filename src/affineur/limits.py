"""How deeply a document affineur reads may nest.

Python's parsers (json, tomllib, PyYAML) and what walks their results
(jsonschema, the config's line maps) recurse once per level, so a few kilobytes
of ``[[[[…`` in a config file, a lock, an index page or an sdist's
pyproject.toml exhaust the interpreter's stack: a RecursionError that no caller
expects, and a traceback. Nothing affineur reads needs more than a handful of
levels, so a document nested deeper than :data:`MAX_DEPTH` is refused, measured
without recursion, and a parser's own RecursionError is reported the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["MAX_DEPTH", "TOO_DEEP", "too_deep"]

MAX_DEPTH = 64
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep; refused"
_CONTAINERS = (dict, list, tuple)


def _json_children(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        return value.values()
    if isinstance(value, list | tuple):
        return value
    return ()


def too_deep(
    value: Any,
    children: Callable[[Any], Iterable[Any]] = _json_children,
    limit: int = MAX_DEPTH,
) -> bool:
    """Whether ``value`` (parsed JSON or TOML, or any tree ``children`` walks) nests
    deeper than ``limit``. Linear in the size of the tree as walked: a caller with
    shared subtrees (YAML aliases) bounds their expansion first."""
    if children is _json_children:
        return _json_too_deep(value, limit)
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children(item))
    return False


def _json_too_deep(value: Any, limit: int) -> bool:
    """:func:`too_deep` for parsed JSON or TOML, answering the same.

    An index page holds thousands of strings and numbers: stacking each leaf only
    to find it has no children was most of the walk. Only containers are stacked;
    a leaf's depth is its container's plus one, so a non-empty container at the
    limit is already too deep.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            items: Iterable[Any] = item.values()
        elif isinstance(item, list | tuple):
            items = item
        else:
            continue
        if item and depth >= limit:
            return True
        depth += 1
        for child in items:
            if isinstance(child, _CONTAINERS):
                stack.append((child, depth))
    return False
