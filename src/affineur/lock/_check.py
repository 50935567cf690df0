"""``affineur check``: may this pull request be merged? Offline, for CI.

It answers without the network (CI for pull requests often has none, and a
check must not depend on the index being up): every config file and every
lock is validated, and every lock must be fresh, that is made from exactly the
config in the checkout. A PR that edits a collection without committing the
re-lock fails here, with the command that fixes it.

All problems are collected before reporting, so one CI run shows them all.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from affineur.config import Project, load_project
from affineur.errors import AffineurError
from affineur.graph import BUILD_REQ_TYPES, Graph, Node, build_order, install_closure
from affineur.hooks import ENTRY_POINT_GROUP, plugin_names
from affineur.index import SDIST_SUFFIXES, check_filename, git_archive_name, sha256_file
from affineur.lock._files import LockPaths, find_locks, lock_is_fresh, read_lock
from affineur.pep517 import changed_tools, choose_sandbox, interpreter_of, tree_hash

__all__ = [
    "CheckReport",
    "LockState",
    "LockStatus",
    "SandboxStatus",
    "check_project",
    "plugin_problems",
]

LockState = Literal["ok", "stale", "missing", "invalid", "orphan", "unchecked"]

RELOCK = "run 'doit lock' (or 'affineur lock') and commit lock/"


@dataclass(frozen=True)
class LockStatus:
    collection: str
    variant: str
    state: LockState
    detail: str
    issues: tuple[str, ...] = ()
    """Each problem of an invalid lock on its own (``detail`` joins them)."""
    attested: tuple[str, ...] = ()
    """The sources with PEP 740 publisher attestations: ``file (publisher, …)``."""
    host_tools: tuple[str, ...] = ()
    """Warnings: nodes whose hooks looked for a host tool that is different here."""

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def line(self) -> str:
        return f"{self.state:9} {self.collection}/{self.variant}: {self.detail}"

    def problem_lines(self) -> list[str]:
        head = f"{self.state:9} {self.collection}/{self.variant}: "
        return [head + issue for issue in self.issues] or [self.line()]

    def attested_lines(self) -> list[str]:
        return [f"attested  {self.collection}/{self.variant}: {a}" for a in self.attested]

    def host_tool_lines(self) -> list[str]:
        return [f"host      {self.collection}/{self.variant}: {w}" for w in self.host_tools]


@dataclass(frozen=True)
class SandboxStatus:
    """The sandbox a variant's builds run in on this machine (what this machine can do,
    not a property of the pull request: reported, never a failure of the check)."""

    variant: str
    sandbox: str
    detail: str = ""

    def line(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"sandbox   {self.variant}: {self.sandbox}{extra}"


@dataclass(frozen=True)
class PythonStatus:
    """The interpreter a variant builds with on this machine."""

    variant: str
    python: str
    executable: str

    def line(self) -> str:
        return f"python    {self.variant}: {self.python} ({self.executable})"


@dataclass(frozen=True)
class CheckReport:
    config_problems: tuple[str, ...]
    locks: tuple[LockStatus, ...]
    sandboxes: tuple[SandboxStatus, ...] = ()
    pythons: tuple[PythonStatus, ...] = ()
    """The interpreter of each built variant whose Python was found."""

    @property
    def ok(self) -> bool:
        return not self.config_problems and all(s.ok for s in self.locks)

    def lines(self) -> list[str]:
        out = [f"config    {p}" for p in self.config_problems]
        if not self.config_problems:
            out.append("ok        config")
        for status in self.locks:
            out.append(status.line())
            out += status.attested_lines()
            out += status.host_tool_lines()
        return out + [s.line() for s in self.sandboxes] + [p.line() for p in self.pythons]

    def problems(self) -> list[str]:
        found = (s for s in self.locks if s.state not in ("ok", "unchecked"))
        return [*self.config_problems, *(line for s in found for line in s.problem_lines())]


def _error_lines(exc: AffineurError) -> tuple[str, ...]:
    return tuple(exc.causes) or (exc.one_line(),)


def _lock_problems(
    graph: Graph, collection: str, variant: str, store: Path | None = None
) -> list[str]:
    """What a schema-valid, reference-complete lock can still get wrong."""
    problems = []
    if (graph.collection, graph.variant) != (collection, variant):
        problems.append(
            f"holds {graph.collection}/{graph.variant}, but lives in lock/{collection}/{variant}"
        )
    counts = Counter(graph.nodes[k].name for k in install_closure(graph))
    problems += [f"installs {n} versions of {name}" for name, n in sorted(counts.items()) if n > 1]
    for key, node in sorted(graph.nodes.items()):
        problems += _node_problems(key, node, graph, store)
    try:
        build_order(graph.nodes)
    except AffineurError as exc:
        problems.append(exc.message)
    return problems


def _file_identity(filename: str, wheel: bool) -> tuple[str, Version] | None:
    """(canonical project name, version) a distribution file name says, or None."""
    if wheel:
        try:
            parsed = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion):
            return None
        return str(parsed[0]), parsed[1]
    stem = next((filename[: -len(s)] for s in SDIST_SUFFIXES if filename.endswith(s)), None)
    if stem is None or "-" not in stem:
        return None
    # Versions never hold a '-' once normalised, but old sdists' names do: split at the last.
    project, _, text = stem.rpartition("-")
    try:
        return str(canonicalize_name(project)), Version(text)
    except InvalidVersion:
        return None


def _same_release(named: Version, version: str) -> bool:
    """A file's version is the node's, or the node's with a local label.

    A site plugin's archive is stored as ``name-1.0+plugin.<hash>``: the label
    keeps it apart from the sdist it replaces (see ``plugin_archive_name``).
    """
    wanted = Version(version)
    return named == wanted or (named.local is not None and Version(named.public) == wanted)


def _node_problems(key: str, node: Node, graph: Graph, store: Path | None) -> list[str]:
    """A node's file, edges and build environment checked against itself (offline)."""
    problems = []
    wheel = node.prebuilt
    ref = node.wheel if wheel else node.sdist
    kind = "wheel" if wheel else "sdist"
    if ref is not None:
        try:
            check_filename(ref.filename)
        except AffineurError:
            problems.append(f"{key}: its {kind} name {ref.filename!r} is not a plain file name")
        else:
            identity = _file_identity(ref.filename, wheel)
            if node.git is not None and not wheel:
                # An archive made from git is named for its commit, which must be the lock's.
                expected = git_archive_name(node.name, node.version, node.git.commit)
                identity = (node.name, Version(node.version)) if ref.filename == expected else None
            if identity is None:
                problems.append(f"{key}: {ref.filename!r} is not the name of an {kind}")
            elif identity[0] != node.name or not _same_release(identity[1], node.version):
                problems.append(
                    f"{key}: its {kind} {ref.filename} is a file of {identity[0]} {identity[1]}"
                )
            elif (
                store is not None
                and (store / ref.filename).is_file()
                and sha256_file(store / ref.filename) != ref.sha256
            ):
                problems.append(
                    f"{key}: the sha256 the lock records for {ref.filename} is not the "
                    "sha256 of the downloaded file (build/sdists/); one of them was changed"
                )
    if node.crates is not None and store is not None:
        # Where this machine vendored them, the crates must be the bytes the lock names.
        tree = store / "crates" / node.crates.sha256
        if tree.is_dir() and tree_hash(tree) != node.crates.sha256:
            problems.append(
                f"{key}: the vendored crates in build/sdists/crates/{node.crates.sha256[:16]}… "
                "do not hash to what the lock records; one of them was changed"
            )
    for edge in node.edges:
        try:
            wanted = canonicalize_name(Requirement(edge.req).name)
        except InvalidRequirement:
            problems.append(f"{key}: edge {edge.req!r} is not a requirement")
            continue
        target = graph.nodes.get(edge.key)
        if target is not None and target.name != wanted:
            problems.append(f"{key}: the requirement {edge.req!r} points at {edge.key}")
    env = set(node.build_env)
    missing = sorted(
        {e.key for e in node.edges if e.req_type in BUILD_REQ_TYPES and e.key not in env}
    )
    if missing and not node.prebuilt:
        problems.append(f"{key}: its build_env lacks its build requirements {', '.join(missing)}")
    return problems


def _read(path: Path, collection: str, variant: str) -> tuple[Graph | None, LockStatus | None]:
    """The lock, or the status saying why it is missing or unusable."""
    rel = path.relative_to(path.parents[3]).as_posix()
    try:
        graph = read_lock(path)
    except AffineurError as exc:
        lines = _error_lines(exc)
        return None, LockStatus(collection, variant, "invalid", "; ".join(lines), lines)
    except (KeyError, TypeError, ValueError) as exc:
        # A schema-valid document the model still cannot take: report, never crash CI.
        return None, LockStatus(collection, variant, "invalid", f"{rel}: {exc!r}")
    if graph is None:
        return None, LockStatus(collection, variant, "missing", f"no {rel}; {RELOCK}")
    problems = _lock_problems(graph, collection, variant, path.parents[3] / "build" / "sdists")
    if problems:
        issues = tuple(f"{rel}: {p}" for p in problems)
        return None, LockStatus(collection, variant, "invalid", "; ".join(issues), issues)
    return graph, None


def _lock_files(root: Path) -> list[tuple[str, str, Path]]:
    return [(c, v, path) for (c, v), path in find_locks(root).items()]


def _attested(graph: Graph) -> tuple[tuple[str, ...], int]:
    """The sdists the index vouched for with PEP 740 attestations, and all sdists."""
    sdists = sorted(
        (n.sdist for n in graph.nodes.values() if n.sdist is not None and not n.prebuilt),
        key=lambda ref: ref.filename,
    )
    attested = tuple(
        f"{ref.filename} ({', '.join(p.describe() for p in ref.attested_by)})"
        for ref in sdists
        if ref.attested_by
    )
    return attested, len(sdists)


def _state(state: str | None) -> str:
    return "absent" if state is None else repr(state)


def _host_tool_warnings(graph: Graph, path: str | None) -> tuple[str, ...]:
    """Nodes whose ``get_requires`` hooks looked for a host tool that differs here.

    Not a failure of the check: the lock is right for the host that made it,
    and CI that only checks may not be the host that builds. But a build here
    may be asked for what the lock lacks, or no longer need what it holds.
    """
    warnings = []
    for key, node in sorted(graph.nodes.items()):
        for program, was, now in changed_tools(node.host_tools, path):
            warnings.append(
                f"{key}: its get_requires hooks looked for {program}: {_state(was)} when "
                f"locked, {_state(now)} here; a build here may ask for other build "
                "requirements (hint: build where the tools match, or re-lock here)"
            )
    return tuple(warnings)


def plugin_problems(project: Project) -> list[str]:
    """Every override that names an ``affineur.hooks`` plugin this environment lacks.

    Checked up front, by ``affineur check`` and before a lock starts, so a typo
    is one line, not a failure halfway through a lock or a build.
    """
    named: list[tuple[str, tuple[str, ...], str]] = []
    for _name, override in sorted(project.overrides.items()):
        where = override.file.relative_to(project.root).as_posix()
        raw = override.raw
        blocks: list[tuple[tuple[str, ...], Mapping[str, Any]]] = [((), raw)]
        blocks += [(("variants", v), b) for v, b in raw.get("variants", {}).items()]
        blocks += [(("versions", v), b) for v, b in raw.get("versions", {}).items()]
        named += [(where, at, b["plugin"]) for at, b in blocks if b.get("plugin")]
    if not named:
        return []
    installed = set(plugin_names())
    others = f" (installed: {', '.join(sorted(installed))})" if installed else ""
    return [
        f"{where}: {'.'.join((*at, 'plugin'))}: no '{ENTRY_POINT_GROUP}' plugin named "
        f"{plugin!r} is installed{others}"
        for where, at, plugin in named
        if plugin not in installed
    ]


def _check_locks(project: Project) -> list[LockStatus]:
    statuses = []
    expected: set[tuple[str, str]] = set()
    for c in project.collections.values():
        for v in c.variants:
            expected.add((c.name, v))
            path = LockPaths.of(project.root, c.name, v).graph
            graph, status = _read(path, c.name, v)
            if status is None:
                assert graph is not None
                if lock_is_fresh(project, c, project.variants[v]):
                    installed = len(install_closure(graph))
                    attested, sources = _attested(graph)
                    status = LockStatus(
                        c.name,
                        v,
                        "ok",
                        f"{len(graph.nodes)} packages, {installed} installed, "
                        f"{len(attested)} of {sources} sources with publisher attestations",
                        attested=attested,
                        host_tools=_host_tool_warnings(graph, os.environ.get("PATH")),
                    )
                else:
                    status = LockStatus(
                        c.name, v, "stale", f"the config changed since it was locked; {RELOCK}"
                    )
            statuses.append(status)
    for collection, variant, _path in _lock_files(project.root):
        if (collection, variant) not in expected:
            statuses.append(
                LockStatus(
                    collection,
                    variant,
                    "orphan",
                    f"no collection {collection!r} builds variant {variant!r}; "
                    f"delete lock/{collection}/{variant}/",
                )
            )
    return sorted(statuses, key=lambda s: (s.collection, s.variant))


def check_project(root: Path) -> CheckReport:
    """Validate config and locks and check freshness; never touches the network."""
    try:
        project = load_project(root)
    except AffineurError as exc:
        # Freshness needs a loaded project; the locks can still be validated alone.
        locks = []
        for collection, variant, path in _lock_files(root):
            _graph, status = _read(path, collection, variant)
            locks.append(
                status
                or LockStatus(collection, variant, "unchecked", "valid; freshness needs the config")
            )
        return CheckReport(_error_lines(exc), tuple(locks))
    pythons, missing = _pythons(project)
    missing = (*plugin_problems(project), *missing)
    return CheckReport(missing, tuple(_check_locks(project)), tuple(_sandboxes(project)), pythons)


def _pythons(project: Project) -> tuple[tuple[PythonStatus, ...], tuple[str, ...]]:
    """Each built variant's interpreter on this machine, and those that are missing.

    A missing one fails the check: its variant cannot be built here, and building
    it with another Python would give wheels for the wrong one."""
    found: list[PythonStatus] = []
    missing: list[str] = []
    built = {v for c in project.collections.values() for v in c.variants}
    for name, variant in sorted(project.variants.items()):
        if name not in built:
            continue
        try:
            interpreter = interpreter_of(variant)
        except AffineurError as exc:
            missing.append(f"{exc.one_line()}; {exc.hint}" if exc.hint else exc.one_line())
            continue
        found.append(PythonStatus(name, interpreter.key(), interpreter.executable))
    return tuple(found), tuple(missing)


def _sandboxes(project: Project) -> list[SandboxStatus]:
    statuses = []
    for name, variant in sorted(project.variants.items()):
        setting = variant.sandbox
        where = variant.file.relative_to(project.root).as_posix()
        try:
            kind = choose_sandbox(setting.kind)
        except AffineurError as exc:
            statuses.append(SandboxStatus(name, "unavailable", exc.message))
            continue
        notes = []
        if kind == "none":
            notes.append(f"relaxed in {where}")
        elif setting.relaxed:
            notes.append(f"with more paths from {where}")
        if not variant.network_isolation:
            notes.append("network allowed")
        statuses.append(SandboxStatus(name, kind, "; ".join(notes)))
    return statuses
