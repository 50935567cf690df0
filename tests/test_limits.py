"""The nesting limit: JSON and TOML take a faster walk that must answer as the generic one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from affineur.limits import MAX_DEPTH, too_deep


def _children(value: Any) -> Iterable[Any]:
    # The generic walk, which stacks every leaf too: the reference answer.
    if isinstance(value, dict):
        return value.values()
    if isinstance(value, list | tuple):
        return value
    return ()


def _nest(levels: int, leaf: Any) -> Any:
    value = leaf
    for i in range(levels):
        value = [value] if i % 3 else {"k": value} if i % 2 else (value,)
    return value


@pytest.mark.parametrize("leaf", [1, "x", None, [], {}, (), [1], {"a": None}, ((),)])
@pytest.mark.parametrize("levels", [0, 1, MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1])
def test_json_walk_answers_as_the_generic_walk(levels: int, leaf: Any) -> None:
    value = _nest(levels, leaf)
    assert too_deep(value) == too_deep(value, _children)


def test_limit_counts_a_leaf_as_a_level() -> None:
    # Three levels: the list, the dict, the string.
    page = [{"filename": "a-1.tar.gz"}]
    assert not too_deep(page, limit=3)
    assert too_deep(page, limit=2)
    # An empty container adds no level below itself.
    assert not too_deep([{}], limit=2)
    assert too_deep([{}], limit=1)


def test_a_wide_page_within_the_limit_passes_and_one_deep_entry_does_not() -> None:
    page: dict[str, Any] = {
        "meta": {"api-version": "1.1"},
        "files": [
            {"filename": f"p-{i}.tar.gz", "hashes": {"sha256": "0" * 64}} for i in range(500)
        ],
    }
    assert not too_deep(page)
    page["files"].append(_nest(MAX_DEPTH, "deep"))
    assert too_deep(page)
