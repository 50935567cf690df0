"""The no-op stamp: a plain ``doit`` that has nothing to do answers without loading its tasks.

Deciding that nothing is to be done the long way means importing the engine,
reading the config and every lock, computing every build key and letting doit
make and check every task: a few hundred milliseconds on the example tree,
seconds on a thousand packages, while the answer is almost always "as before".
So a plain run (``doit``, ``doit -n N``, ``doit test_mode=1``: the default tasks,
no ``-a``) that ended with every package built or up to date writes
``.affineur/noop.json``: the ``stat`` (inode, size, mtime and ctime in ns) of
every file and folder that answer read, and what the answer depends on besides
files. The next plain run compares it before the dodo loads; when every entry
still matches, nothing the up-to-date checks look at can have changed, and the
run writes the reports of a no-op (every package up to date) and stops.

What the stamp covers, and why that is everything a no-op's answer reads:

- the checkout's config and locks: ``collections/``, ``variants/``,
  ``overrides/`` (patches included) and ``lock/``, every file and folder (a
  folder's mtime changes when an entry is added, removed or renamed), the dodo
  and the other ``*.py`` files beside it, ``pyproject.toml``, ``doit.cfg``;
- what the tasks' up-to-date checks read: each sdist (doit's file dependency),
  each cache entry (its folder, record and wheel: ``BuildCache.get`` verifies
  the wheel by the same stat), each published index (its folders, pages
  and wheels), doit's state
  (``state.json``, ``journal``: ``doit forget`` and ``doit clean`` change them),
  the signing key;
- what the build keys and the lock's staleness read outside the checkout: the
  host tools a build can use (found again on PATH, then their stat), the
  interpreter of each variant that does not build with this one, pip's config
  files (the default index), the environment variables and doit's command-line
  variables and options, this interpreter, affineur's own files and every
  folder of ``sys.path`` (installing or upgrading any distribution, such as the
  SBOM library whose version is in every key, changes one).

Any mismatch, a missing stamp or a damaged one means the run goes the long
way, which is always right. Every other run removes the stamp before it starts
(under the checkout mutex), so a failed, killed or partial run leaves none, and
a stamp is written only when no input changed while the run was going on (a
re-locking run writes none; the next no-op does). A checkout whose builds use a
site plugin gets no stamp: the plugin's code is not among the files above.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import affineur
from affineur.atomic import write_atomic
from affineur.run._reports import PackageResult, RunSummary

if TYPE_CHECKING:
    from affineur.run._checkout import Checkout

__all__ = [
    "STAMP",
    "Stamp",
    "Stat",
    "environment_key",
    "input_stats",
    "noop_summary",
    "remove_stamp",
    "write_stamp",
]

STAMP = Path(".affineur") / "noop.json"
FORMAT = 1

# The config and lock trees, walked whole.
_TREES = ("collections", "variants", "overrides", "lock")
_ROOT_FILES = ("pyproject.toml", "doit.cfg")
# Set by the shell itself, differently in each directory or invocation; no setting can
# read them (a build receives only the variables of its allow-list).
_VOLATILE_ENV = frozenset({"OLDPWD", "_"})

Stat = list[int] | None


def _stat(path: Path | str) -> Stat:
    try:
        # A stamp's paths are strings: os.stat spares a Path per entry, thousands per check.
        st = os.stat(path)  # noqa: PTH116
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def environment_key(variables: Mapping[str, str], options: Mapping[str, Any]) -> str:
    """What a no-op's answer depends on besides files: one hash, compared whole."""
    data = {
        "format": FORMAT,
        "affineur": affineur.__version__,
        "python": [sys.executable, sys.version, sys.platform],
        "environ": sorted((k, v) for k, v in os.environ.items() if k not in _VOLATILE_ENV),
        "variables": sorted(variables.items()),
        "options": sorted((k, repr(v)) for k, v in options.items()),
    }
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


def remove_stamp(root: Path) -> None:
    """A run that may change what the stamp vouches for removes it first."""
    with contextlib.suppress(FileNotFoundError):
        (Path(root) / STAMP).unlink()


# --- writing --------------------------------------------------------------------------------


def _walk(top: Path | str, suffixes: tuple[str, ...] = ()) -> Iterator[str]:
    """``top`` and the folders and files under it (only files ending in one of
    ``suffixes``, when given); no symlinks followed into folders.

    Strings, not Paths: every run the long way walks these twice.
    """
    yield str(top)
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        yield from (os.path.join(dirpath, d) for d in dirnames)  # noqa: PTH118
        yield from (
            os.path.join(dirpath, f)  # noqa: PTH118
            for f in sorted(filenames)
            if not suffixes or f.endswith(suffixes)
        )


def _distribution_folders() -> list[str]:
    """The folders of ``sys.path`` that hold installed distributions, and the stdlib's.

    Installing, removing or upgrading a distribution adds or renames its
    ``.dist-info`` folder there, which changes the folder's mtime.
    """
    found = {str(Path(os.__file__).parent)}
    for entry in sys.path:
        folder = Path(entry)
        if folder.name in ("site-packages", "dist-packages") and folder.is_dir():
            found.add(str(folder.absolute()))
    return sorted(found)


def input_stats(root: Path) -> dict[str, Stat]:
    """The stat of every file and folder a no-op reads that the run itself does not make:
    the config, the locks, affineur, the installed distributions, the host tools.

    Taken before the dodo loads and again when the run ends: a stamp is written
    only when both agree, so it never vouches for a file the run did not read
    (edited, installed or upgraded while it ran, or re-locked by it).
    """
    root = Path(root)
    paths: list[Path | str] = [root, *root.glob("*.py"), *(root / n for n in _ROOT_FILES)]
    for tree in _TREES:
        paths += _walk(root / tree)
    from affineur.config import config_files

    paths += config_files(os.environ)
    package = Path(affineur.__file__).parent
    paths += _walk(package, (".py", ".json"))
    paths += _distribution_folders()
    paths += (tool[0] for tool in _tools(root).values() if tool is not None)
    return {str(p): _stat(p) for p in paths}


def _outputs(checkout: Checkout) -> list[Path | str] | None:
    """Files and folders the tasks made, as their up-to-date checks see them.

    None when one is missing or no longer what it was (a wheel damaged or removed
    while the run went on): then the next run must look for itself.
    """
    from affineur.run._substitution import is_substitute

    out: list[Path | str] = []
    state = checkout.root / ".affineur" / "doit-state"
    out += [state, state / "state.json", state / "journal"]
    seen: set[str] = set()
    for lv in checkout.locked:
        for node in lv.graph.nodes.values():
            if checkout.settings(lv.variant, node).plugin and not node.prebuilt:
                return None
            ref = node.wheel if node.prebuilt else node.sdist
            if ref is not None:
                out.append(checkout.store.path(ref.filename))
            if node.crates is not None and not node.prebuilt:
                out.append(checkout.store.root / "crates" / node.crates.sha256)
        for key in sorted(set(lv.keys.values())):
            if key in seen:
                continue
            seen.add(key)
            entry = checkout.cache.get(key)
            if entry is None or is_substitute(entry):
                return None  # as doit's up-to-date check (trusted) sees it
            # The record, the wheel and what lies beside it; the folder's mtime covers
            # the verification memo, replaced by a rename.
            out.append(entry.path)
            with os.scandir(entry.path) as found:
                out += (e.path for e in found if not e.name.startswith("."))
        dist = checkout.dist_dir(lv.collection.name, lv.variant.name)
        index = dist / "simple" / "index.html"
        if not index.is_file():
            return None
        # What publish's up-to-date check reads: the index page, each wheel's name and
        # size and each project page (Checkout.published_whole); the folders show one
        # removed or added.
        out += [dist, dist / "files", dist / "simple", index]
        out += sorted((dist / "files").glob("*.whl"))
        out += sorted((dist / "simple").glob("*/index.html"))
    return out


def _tools(root: Path) -> dict[str, list[Any] | None]:
    """Each host tool a build can use: the binary a backend would run, and its stat."""
    from affineur.build import HOST_TOOLS, HostTools

    host = HostTools(root / "build" / "host-tools.json")
    out: dict[str, list[Any] | None] = {}
    for name, variable in HOST_TOOLS:
        binary = host.find(name, variable)
        out[name] = None if binary is None else [str(binary), _stat(binary)]
    return out


def _interpreters(checkout: Checkout) -> list[list[str | None]]:
    """Each variant whose interpreter is found by searching: what it searched for, and found."""
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    out: list[list[str | None]] = []
    for lv in checkout.locked:
        v = lv.variant
        if v.interpreter is None and v.python == running:
            continue  # this interpreter: in the environment key
        out.append([v.python, v.interpreter, checkout.interpreter(v).key()])
    return out


def write_stamp(
    checkout: Checkout, key: str, summary: RunSummary, *, before: Mapping[str, Stat]
) -> Path | None:
    """Record that a plain run ended with nothing left to do; None when it cannot vouch.

    ``before`` is :func:`input_stats` as the run started.
    """
    if summary.failures or summary.failed_tasks:
        return None
    if any(p.outcome not in ("built", "reused", "remote", "uptodate") for p in summary.packages):
        return None
    files = input_stats(checkout.root)
    if files != before:
        return None  # changed while the run read it (or it re-locked): vouch for nothing
    outputs = _outputs(checkout)
    if outputs is None:
        return None
    if checkout.signing_key is not None:
        outputs.append(checkout.signing_key)
    for path in outputs:
        files[str(path)] = _stat(path)
    # Paths in the checkout are kept relative to it: a smaller stamp reads faster.
    here = f"{checkout.root}{os.sep}"
    files = {p.removeprefix(here): stat for p, stat in files.items()}
    stamp = {
        "format": FORMAT,
        "key": key,
        "test_mode": summary.test_mode,
        "tools": _tools(checkout.root),
        "interpreters": _interpreters(checkout),
        "packages": [
            [p.task, p.package, p.version, p.variant, list(p.deps), p.prebuilt]
            for p in summary.packages
        ],
        "files": files,
    }
    path = checkout.root / STAMP
    write_atomic(path, json.dumps(stamp, separators=(",", ":")))
    return path


# --- reading ------------------------------------------------------------------------------


class Stamp:
    """A stamp read back, and whether the checkout is still as it says."""

    def __init__(self, root: Path, data: Mapping[str, Any]) -> None:
        self.root = root
        self.data = data

    @classmethod
    def read(cls, root: Path) -> Stamp | None:
        try:
            data = json.loads((Path(root) / STAMP).read_bytes())
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        return cls(Path(root), data)

    def holds(self, key: str) -> bool:
        """Whether nothing the stamp covers changed (any doubt, such as bad data, is no)."""
        try:
            return (
                self.data["key"] == key
                and self._files_hold(self.data["files"])
                and self._tools_hold(self.data["tools"])
                and self._interpreters_hold(self.data["interpreters"])
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return False

    def _files_hold(self, files: Mapping[str, Stat]) -> bool:
        root = str(self.root)
        # os.path.join keeps an absolute path as it is: paths outside the checkout.
        return all(_stat(os.path.join(root, path)) == stat for path, stat in files.items())  # noqa: PTH118

    def _tools_hold(self, tools: Mapping[str, list[Any] | None]) -> bool:
        return dict(tools) == _tools(self.root)

    def _interpreters_hold(self, wanted: Sequence[Sequence[str | None]]) -> bool:
        if not wanted:
            return True
        from affineur.errors import AffineurError
        from affineur.pep517 import find_interpreter

        memo = self.root / "build" / "interpreters.json"
        for python, explicit, key in wanted:
            try:
                found = find_interpreter(str(python), explicit=explicit, memo=memo)
            except AffineurError:
                return False
            if found.key() != key:
                return False
        return True

    def packages(self) -> Iterable[PackageResult]:
        for task, package, version, variant, deps, prebuilt in self.data["packages"]:
            yield PackageResult(
                task=str(task),
                package=str(package),
                version=str(version),
                variant=str(variant),
                outcome="uptodate",
                deps=tuple(str(d) for d in deps),
                prebuilt=bool(prebuilt),
            )


def noop_summary(root: Path, key: str, *, started: float) -> RunSummary | None:
    """The summary of a no-op run, when the stamp still holds; None: run the long way."""
    stamp = Stamp.read(root)
    if stamp is None or not stamp.holds(key):
        return None
    try:
        packages = tuple(stamp.packages())
        test_mode = bool(stamp.data["test_mode"])
    except (KeyError, TypeError, ValueError):
        return None
    return RunSummary(
        packages=packages,
        seconds=time.monotonic() - started,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        test_mode=test_mode,
    )
