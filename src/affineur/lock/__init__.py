"""Stage 1: resolve a collection for a variant into a lock, and read, compare and explain locks."""

from typing import TYPE_CHECKING

from affineur._lazy import lazy_exports

if TYPE_CHECKING:
    from affineur.lock._check import check_project
    from affineur.lock._diff import (
        BuildEnvChange,
        CrateChange,
        VersionChange,
        diff_graphs,
        diff_locks,
        render_markdown,
        render_text,
    )
    from affineur.lock._explain import (
        Duplicate,
        WhyPath,
        duplicates,
        format_path,
        tree_data,
        tree_lines,
        why,
    )
    from affineur.lock._files import (
        LockId,
        LockPaths,
        find_locks,
        input_hash,
        lock_is_fresh,
        parse_lock,
        read_lock,
        read_locks,
        write_lock,
    )
    from affineur.lock._gitsource import git_location
    from affineur.lock._locker import lock
    from affineur.lock._resolver import ResolveRequest, resolve
    from affineur.lock._source_mode import SourceBuilds

# Each name loads its module on first use (see affineur._lazy).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "_check": ("check_project",),
        "_diff": (
            "BuildEnvChange",
            "CrateChange",
            "VersionChange",
            "diff_graphs",
            "diff_locks",
            "render_markdown",
            "render_text",
        ),
        "_explain": (
            "Duplicate",
            "WhyPath",
            "duplicates",
            "format_path",
            "tree_data",
            "tree_lines",
            "why",
        ),
        "_files": (
            "LockId",
            "LockPaths",
            "find_locks",
            "input_hash",
            "lock_is_fresh",
            "parse_lock",
            "read_lock",
            "read_locks",
            "write_lock",
        ),
        "_gitsource": ("git_location",),
        "_locker": ("lock",),
        "_resolver": ("ResolveRequest", "resolve"),
        "_source_mode": ("SourceBuilds",),
    },
)

__all__ = [
    "BuildEnvChange",
    "CrateChange",
    "Duplicate",
    "LockId",
    "LockPaths",
    "ResolveRequest",
    "SourceBuilds",
    "VersionChange",
    "WhyPath",
    "check_project",
    "diff_graphs",
    "diff_locks",
    "duplicates",
    "find_locks",
    "format_path",
    "git_location",
    "input_hash",
    "lock",
    "lock_is_fresh",
    "parse_lock",
    "read_lock",
    "read_locks",
    "render_markdown",
    "render_text",
    "resolve",
    "tree_data",
    "tree_lines",
    "why",
    "write_lock",
]
