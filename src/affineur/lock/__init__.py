"""Stage 1: resolve a collection for a variant into a lock, and read, compare and explain locks."""

from affineur.lock._check import check_project
from affineur.lock._diff import (
    BuildEnvChange,
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

__all__ = [
    "BuildEnvChange",
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
