"""What changed between two locks, in the terms a pull-request reviewer cares about.

A raw ``git diff`` of graph.json shows moved JSON; a reviewer wants to know which
packages were added, removed, upgraded or downgraded, which build environments
changed, and above all whether an artifact's hash changed under an unchanged
``name==version`` (a re-uploaded sdist is the classic supply-chain red flag).

Pure: graphs in, records out, text out. Reading locks from git or directories is
the caller's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from packaging.version import InvalidVersion, Version

from affineur.graph import FileRef, Graph, Node, NodeKey, install_closure
from affineur.lock._files import LockId

__all__ = [
    "BuildEnvChange",
    "CrateChange",
    "GraphDiff",
    "HashChange",
    "HostToolChange",
    "Scope",
    "TargetChange",
    "VersionChange",
    "diff_graphs",
    "diff_locks",
    "render_markdown",
    "render_text",
]

Scope = Literal["install", "build"]
"""``install``: in the collection's install closure (what users get);
``build``: only in some build environment (what the wheels were made with)."""

ChangeKind = Literal["added", "removed", "upgraded", "downgraded"]


@dataclass(frozen=True, order=True)
class VersionChange:
    scope: Scope
    name: str
    old: str | None
    new: str | None

    @property
    def kind(self) -> ChangeKind:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "upgraded" if _version(self.new) > _version(self.old) else "downgraded"


@dataclass(frozen=True, order=True)
class BuildEnvChange:
    """A node kept at the same version whose build environment changed."""

    key: NodeKey
    added: tuple[NodeKey, ...]
    removed: tuple[NodeKey, ...]


@dataclass(frozen=True, order=True)
class HashChange:
    """The same ``name==version`` with a different artifact: never benign, always shown."""

    key: NodeKey
    artifact: Literal["sdist", "wheel"]
    old: FileRef | None
    new: FileRef | None


@dataclass(frozen=True, order=True)
class CrateChange:
    """A node kept at the same version whose vendored Rust crates changed.

    Crates are named ``name version``; ``rehashed`` holds (crate, old sha256, new
    sha256) for a crate whose checksum changed under the same version, which,
    like a re-uploaded sdist, is never benign.
    """

    key: NodeKey
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    rehashed: tuple[tuple[str, str | None, str | None], ...] = ()


@dataclass(frozen=True, order=True)
class HostToolChange:
    """A host build tool a node's hooks looked for, found otherwise on the host
    that made the new lock (its version line; None: absent): why its build
    requirements may have moved without any change to the config."""

    key: NodeKey
    program: str
    old: str | None
    new: str | None


@dataclass(frozen=True, order=True)
class TargetChange:
    """One marker value of the target: a changed target changes every build key."""

    marker: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class GraphDiff:
    collection: str
    variant: str
    status: Literal["changed", "added", "removed"] = "changed"
    versions: tuple[VersionChange, ...] = ()
    build_envs: tuple[BuildEnvChange, ...] = ()
    hashes: tuple[HashChange, ...] = ()
    toplevel_added: tuple[str, ...] = field(default=())
    toplevel_removed: tuple[str, ...] = field(default=())
    target: tuple[TargetChange, ...] = ()
    crates: tuple[CrateChange, ...] = ()
    host_tools: tuple[HostToolChange, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(
            self.status != "changed"
            or self.crates
            or self.host_tools
            or self.target
            or self.versions
            or self.build_envs
            or self.hashes
            or self.toplevel_added
            or self.toplevel_removed
        )


def _version(text: str) -> Version:
    # A lock may hold a legacy version string; order it below every valid one
    # rather than refusing to diff.
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0.dev0")


def _sort_key(text: str) -> tuple[Version, str]:
    return (_version(text), text)


def pair_versions(old: Iterable[str], new: Iterable[str]) -> list[tuple[str | None, str | None]]:
    """Match the versions of one name that only one side has.

    Versions on both sides are unchanged and drop out. What is left is paired
    by closeness in version order (each of the fewer left-overs takes the
    nearest unpaired version of the other side), so ``setuptools 69, 70 ->
    69, 71`` reads as one upgrade 70 -> 71, not a removal and an addition.
    """
    common = set(old) & set(new)
    olds = sorted(set(old) - common, key=_sort_key)
    news = sorted(set(new) - common, key=_sort_key)
    merged = sorted([(v, 0) for v in olds] + [(v, 1) for v in news], key=lambda t: _sort_key(t[0]))
    rank = {(v, side): i for i, (v, side) in enumerate(merged)}
    few, many = (olds, news) if len(olds) <= len(news) else (news, olds)
    few_side = 0 if few is olds else 1
    free = list(many)
    pairs: list[tuple[str | None, str | None]] = []
    for v in few:
        r = rank[(v, few_side)]
        # On a tie the higher version wins: upgrades are the common case.
        ahead = sorted(free, key=_sort_key, reverse=True)
        best = min(ahead, key=lambda m: abs(rank[(m, 1 - few_side)] - r))
        free.remove(best)
        pairs.append((v, best) if few_side == 0 else (best, v))
    pairs += [(None, m) if few_side == 0 else (m, None) for m in free]
    return sorted(pairs, key=lambda p: _sort_key(p[0] or p[1] or ""))


def _by_name(graph: Graph | None, keys: Iterable[NodeKey]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if graph is None:
        return out
    for key in keys:
        node = graph.nodes[key]
        out.setdefault(node.name, []).append(node.version)
    return out


def _scopes(graph: Graph | None) -> tuple[list[NodeKey], list[NodeKey]]:
    if graph is None:
        return [], []
    install = install_closure(graph)
    members = set(install)
    return install, sorted(k for k in graph.nodes if k not in members)


def _version_changes(
    scope: Scope, old: Mapping[str, list[str]], new: Mapping[str, list[str]]
) -> list[VersionChange]:
    changes = []
    for name in sorted(set(old) | set(new)):
        for before, after in pair_versions(old.get(name, ()), new.get(name, ())):
            changes.append(VersionChange(scope, name, before, after))
    return changes


def _hash_changes(key: NodeKey, old: Node, new: Node) -> list[HashChange]:
    out = []
    if old.sdist != new.sdist:
        out.append(HashChange(key, "sdist", old.sdist, new.sdist))
    if old.wheel != new.wheel:
        out.append(HashChange(key, "wheel", old.wheel, new.wheel))
    return out


def _crate_change(key: NodeKey, old: Node, new: Node) -> CrateChange | None:
    before = {(c.name, c.version): c.sha256 for c in (old.crates.crates if old.crates else ())}
    after = {(c.name, c.version): c.sha256 for c in (new.crates.crates if new.crates else ())}
    change = CrateChange(
        key,
        added=tuple(f"{n} {v}" for n, v in sorted(after.keys() - before.keys())),
        removed=tuple(f"{n} {v}" for n, v in sorted(before.keys() - after.keys())),
        rehashed=tuple(
            (f"{n} {v}", before[(n, v)], after[(n, v)])
            for n, v in sorted(before.keys() & after.keys())
            if before[(n, v)] != after[(n, v)]
        ),
    )
    return change if change.added or change.removed or change.rehashed else None


def diff_graphs(old: Graph | None, new: Graph | None) -> GraphDiff:
    """The changes from ``old`` to ``new`` (None: the lock did not exist on that side)."""
    ref = new or old
    if ref is None:
        raise ValueError("diff_graphs needs at least one graph")
    old_install, old_build = _scopes(old)
    new_install, new_build = _scopes(new)
    versions = _version_changes(
        "install", _by_name(old, old_install), _by_name(new, new_install)
    ) + _version_changes("build", _by_name(old, old_build), _by_name(new, new_build))
    envs: list[BuildEnvChange] = []
    hashes: list[HashChange] = []
    crates: list[CrateChange] = []
    tools: list[HostToolChange] = []
    old_nodes = old.nodes if old else {}
    new_nodes = new.nodes if new else {}
    for key in sorted(set(old_nodes) & set(new_nodes)):
        before, after = old_nodes[key], new_nodes[key]
        hashes += _hash_changes(key, before, after)
        crate_change = _crate_change(key, before, after)
        if crate_change is not None:
            crates.append(crate_change)
        added = tuple(sorted(set(after.build_env) - set(before.build_env)))
        removed = tuple(sorted(set(before.build_env) - set(after.build_env)))
        if added or removed:
            envs.append(BuildEnvChange(key, added, removed))
        was, now = dict(before.host_tools), dict(after.host_tools)
        tools += [
            HostToolChange(key, program, was[program], now[program])
            for program in sorted(set(was) & set(now))
            if was[program] != now[program]
        ]
    target: list[TargetChange] = []
    if old is not None and new is not None:
        for marker in sorted(set(old.target) | set(new.target)):
            if old.target.get(marker) != new.target.get(marker):
                target.append(TargetChange(marker, old.target.get(marker), new.target.get(marker)))
    old_top = {e.req for e in old.toplevel} if old else set()
    new_top = {e.req for e in new.toplevel} if new else set()
    status: Literal["changed", "added", "removed"] = (
        "added" if old is None else "removed" if new is None else "changed"
    )
    return GraphDiff(
        collection=ref.collection,
        variant=ref.variant,
        status=status,
        versions=tuple(versions),
        build_envs=tuple(envs),
        hashes=tuple(hashes),
        toplevel_added=tuple(sorted(new_top - old_top)),
        toplevel_removed=tuple(sorted(old_top - new_top)),
        target=tuple(target),
        crates=tuple(crates),
        host_tools=tuple(tools),
    )


def diff_locks(old: Mapping[LockId, Graph], new: Mapping[LockId, Graph]) -> list[GraphDiff]:
    """One diff per (collection, variant) on either side, unchanged ones included."""
    return [diff_graphs(old.get(lid), new.get(lid)) for lid in sorted(set(old) | set(new))]


# --- rendering ------------------------------------------------------------------


def _ref(ref: FileRef | None) -> str:
    return "(none)" if ref is None else f"{ref.filename} sha256:{ref.sha256}"


def _change_text(c: VersionChange) -> str:
    if c.kind == "added":
        return f"{c.name} {c.new}"
    if c.kind == "removed":
        return f"{c.name} {c.old}"
    return f"{c.name} {c.old} -> {c.new}"


_KIND_ORDER: Sequence[ChangeKind] = ("added", "removed", "upgraded", "downgraded")
_SCOPE_TITLE: Mapping[Scope, str] = {
    "install": "installed packages",
    "build": "build-only packages",
}


def render_text(diffs: Sequence[GraphDiff]) -> str:
    """Plain text for a terminal; empty when nothing changed."""
    lines: list[str] = []
    for d in diffs:
        if not d.changed:
            continue
        lines.append(
            f"{d.collection}/{d.variant}" + ("" if d.status == "changed" else f": lock {d.status}")
        )
        for h in d.hashes:
            lines.append(f"  !! HASH CHANGED {h.key} {h.artifact}: {_ref(h.old)} -> {_ref(h.new)}")
        for moved in d.crates:
            for crate, was, now in moved.rehashed:
                lines.append(f"  !! CRATE HASH CHANGED {moved.key} crate {crate}: {was} -> {now}")
        for t in d.target:
            lines.append(f"  target     {t.marker}: {t.old or '(none)'} -> {t.new or '(none)'}")
        lines += [f"  + requirement {r}" for r in d.toplevel_added]
        lines += [f"  - requirement {r}" for r in d.toplevel_removed]
        for scope in ("install", "build"):
            for kind in _KIND_ORDER:
                for c in d.versions:
                    if c.scope == scope and c.kind == kind:
                        lines.append(f"  {scope:7} {kind:10} {_change_text(c)}")
        for e in d.build_envs:
            parts = [f"+{k}" for k in e.added] + [f"-{k}" for k in e.removed]
            lines.append(f"  build-env  {e.key}: {' '.join(parts)}")
        for moved in d.crates:
            parts = [f"+{k}" for k in moved.added] + [f"-{k}" for k in moved.removed]
            if parts:
                lines.append(f"  crates     {moved.key}: {' '.join(parts)}")
        for tool in d.host_tools:
            lines.append(
                f"  host-tool  {tool.key}: {tool.program} {_tool(tool.old)} -> "
                f"{_tool(tool.new)} (on the host that locked)"
            )
    return "\n".join(lines) + ("\n" if lines else "")


def _tool(state: str | None) -> str:
    return "absent" if state is None else repr(state)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(diffs: Sequence[GraphDiff]) -> str:
    """A pull-request comment: a section per changed lock, tables, hash changes first."""
    changed = [d for d in diffs if d.changed]
    if not changed:
        return "No lock changes.\n"
    out: list[str] = []
    for d in changed:
        title = f"### `{d.collection}` / `{d.variant}`"
        if d.status != "changed":
            title += f" (lock {d.status})"
        out += [title, ""]
        rehashed = [(c.key, *r) for c in d.crates for r in c.rehashed]
        if d.hashes or rehashed:
            out += [
                "> [!CAUTION]",
                "> Same name and version, different artifact. Find out why before merging.",
                "",
                "| package | artifact | old | new |",
                "|---|---|---|---|",
            ]
            out += [
                f"| `{h.key}` | {h.artifact} | {_md_cell(_ref(h.old))} | {_md_cell(_ref(h.new))} |"
                for h in d.hashes
            ]
            out += [f"| `{k}` | crate {crate} | {was} | {now} |" for k, crate, was, now in rehashed]
            out.append("")
        if d.target:
            out += [
                "**target** (every build key changes)",
                "",
                "| marker | old | new |",
                "|---|---|---|",
            ]
            out += [f"| `{t.marker}` | {t.old or ''} | {t.new or ''} |" for t in d.target]
            out.append("")
        if d.toplevel_added or d.toplevel_removed:
            out += ["Top-level requirements:", ""]
            out += [f"- added `{r}`" for r in d.toplevel_added]
            out += [f"- removed `{r}`" for r in d.toplevel_removed]
            out.append("")
        for scope in ("install", "build"):
            rows = [c for c in d.versions if c.scope == scope]
            if not rows:
                continue
            rows.sort(key=lambda c: (_KIND_ORDER.index(c.kind), c.name))
            out += [
                f"**{_SCOPE_TITLE[scope]}**",
                "",
                "| change | package | old | new |",
                "|---|---|---|---|",
            ]
            out += [f"| {c.kind} | `{c.name}` | {c.old or ''} | {c.new or ''} |" for c in rows]
            out.append("")
        if d.build_envs:
            out += ["**build environments**", "", "| package | added | removed |", "|---|---|---|"]
            out += [
                f"| `{e.key}` | {', '.join(f'`{k}`' for k in e.added)} "
                f"| {', '.join(f'`{k}`' for k in e.removed)} |"
                for e in d.build_envs
            ]
            out.append("")
        if d.host_tools:
            out += [
                "**host tools the hooks looked for** (on the host that locked)",
                "",
                "| package | tool | old | new |",
                "|---|---|---|---|",
            ]
            out += [
                f"| `{h.key}` | {h.program} | {_md_cell(_tool(h.old))} | {_md_cell(_tool(h.new))} |"
                for h in d.host_tools
            ]
            out.append("")
        moved = [c for c in d.crates if c.added or c.removed]
        if moved:
            out += ["**vendored crates**", "", "| package | added | removed |", "|---|---|---|"]
            out += [
                f"| `{c.key}` | {', '.join(f'`{k}`' for k in c.added)} "
                f"| {', '.join(f'`{k}`' for k in c.removed)} |"
                for c in moved
            ]
            out.append("")
    return "\n".join(out)
