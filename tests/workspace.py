"""A throw-away affineur checkout wired to the fake index, driven like a user drives it.

Tests write collections, variants and overrides into it, then run the real
``dodo.py`` through ``python -m doit`` (and ``affineur`` through ``python -m
affineur.cli``) in a process of its own, as a user would in a terminal: forked
from a warm interpreter (tests/forkserver.py) rather than started cold.

Discovery dominates a cold lock (upstream wheels built by pip, then the hooks of
every sdist), and its results depend only on the sdists and their environments.
So one cold lock of the whole standard catalog runs once per test session
(:func:`lock_catalog`), and each workspace starts with a copy of its discovery
caches (:func:`copy_discovery_caches`): a test's lock still resolves over the
fake index and assembles its graph, without re-running hooks it already ran.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from packaging.tags import sys_tags

from tests.ecosystem import BuiltRelease, FakeIndex, write_wheel
from tests.forkserver import ForkServer
from tests.paths import REPO


@dataclass
class Workspace:
    root: Path
    index: FakeIndex | None

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def collection(
        self,
        requirements: list[str],
        *,
        name: str = "demo",
        variants: tuple[str, ...] = ("cpu",),
        constraints: tuple[str, ...] = (),
    ) -> Path:
        return self.write(
            f"collections/{name}.toml",
            f"description = {name!r}\n"
            f"variants = {json.dumps(list(variants))}\n"
            f"requirements = {json.dumps(requirements)}\n"
            f"constraints = {json.dumps(list(constraints))}\n",
        )

    def variant(self, name: str = "cpu", extra: str = "") -> Path:
        assert self.index is not None, "a workspace without a fake index writes its own variants"
        return self.write(
            f"variants/{name}.yaml",
            f"description: {name}\nindexes: [{json.dumps(self.index.url)}]\n{extra}",
        )

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOIT_")}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
        if self.index is not None:
            # Only the fake index may be asked; without one, pip's configuration is
            # how affineur finds the real index, as it would for a user.
            env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
            env["PIP_CONFIG_FILE"] = os.devnull
            env["NO_PROXY"] = "127.0.0.1,localhost"
        env.update(extra or {})
        return env

    def run(self, *argv: str, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:  # fmt: skip
        environ = self.environ(env)
        server = _fork_server(environ)
        if server.accepts(argv, environ):
            return server.run(argv, cwd=self.root, env=environ, timeout=timeout)
        return subprocess.run(
            [sys.executable, *argv],
            cwd=self.root,
            env=environ,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def doit(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "doit", *args, env=env)

    def affineur(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "affineur.cli", *args, env=env)

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``affineur ARGS`` from this checkout, run in this process through the command's
        entry point, with the environment :meth:`affineur` gives it.

        It prints and returns what the console script prints and exits with, without
        the new interpreter that spends 0.4 s of CPU importing affineur first.
        ``test_cli`` and ``test_bad_input`` keep running the real console script, which
        proves that no traceback escapes it; here an escaping exception fails the test.
        Hooks and builds still run in their own processes.
        """
        from affineur.cli import main

        out, err = io.StringIO(), io.StringIO()
        saved, environ, cwd = dict(os.environ), self.environ(env), Path.cwd()
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(self.root)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(list(args))
                except SystemExit as exc:  # argparse's usage errors
                    code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(saved)
        return subprocess.CompletedProcess(
            ["affineur", *args], code, out.getvalue(), err.getvalue()
        )

    def graph(self, collection: str = "demo", variant: str = "cpu") -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (self.root / "lock" / collection / variant / "graph.json").read_text()
        )
        return data

    def outcomes(self) -> dict[str, str]:
        """Build task -> outcome (built, reused, uptodate, ...) of the last doit run."""
        summary = json.loads((self.root / "build/reports/summary.json").read_text())
        return {p["task"]: p["outcome"] for p in summary["packages"]}

    def executed(self) -> list[str]:
        """Build tasks the last doit run executed (built or taken from the cache)."""
        return sorted(t for t, o in self.outcomes().items() if o not in ("uptodate", "skipped"))

    def nodes(self, collection: str = "demo", variant: str = "cpu") -> dict[str, Any]:
        return {k: v for k, v in self.graph(collection, variant)["nodes"].items() if k}


_SERVER: list[ForkServer] = []


def _fork_server(environ: dict[str, str]) -> ForkServer:
    """This process's fork server (tests/forkserver.py), made on first use."""
    if not _SERVER:
        _SERVER.append(ForkServer(environ))
        atexit.register(close_fork_server)
    return _SERVER[0]


def close_fork_server() -> None:
    """Stop this process's fork server and wait for it (so its CPU time is counted)."""
    while _SERVER:
        _SERVER.pop().close()


# What a lock leaves under build/ that a later lock of the same sdists reuses: hook
# results and prepared metadata (cached by sdist hash and environment), upstream
# wheels for discovery environments, and the verified sdists. Discovery venvs are
# left out: a venv does not survive being moved.
DISCOVERY_CACHES = ("discovery/hooks", "discovery/metadata", "upstream-wheels", "sdists")

CATALOG_COLLECTION = "catalog"
CATALOG_REQUIREMENTS = [
    "app",
    "multi",
    "shared",
    "dyn-requires",
    "dyn-sdist-requires",
    "env-reader",
    "meta-static",
    "meta-dynamic-wheel",
    "meta-dynamic-hook",
    "broken",
    "broken-nowheel",
    "uses-broken",
    "needs-tool",
    "odd-name-pkg",
]
"""Every standard-catalog project that locks (no conflict, cycle or failing hook)."""


def copy_discovery_caches(source: Path, dest: Path) -> None:
    """Give checkout ``dest`` the discovery caches of checkout ``source``."""
    for part in DISCOVERY_CACHES:
        if (source / "build" / part).is_dir():
            shutil.copytree(source / "build" / part, dest / "build" / part, dirs_exist_ok=True)


def seed_discovery_wheels(root: Path, releases: Iterable[BuiltRelease]) -> None:
    """Give checkout ``root`` the wheels pip would build for discovery from sdist-only releases.

    Where the index has no wheel of a build tool, discovery has pip build one from
    the sdist: seconds of CPU each, most of a cold lock of the catalog. The fake
    backend writes the same wheel in-process in milliseconds, into the cache where
    discovery keeps what pip built. Tests of a ``cold_workspace`` still have pip
    build them (``test_bad_input`` checks that it did).
    """
    tag = next(iter(sys_tags()))
    built = root / "build" / "upstream-wheels" / "built" / f"{tag.interpreter}-{tag.abi}"
    for release in releases:
        project = release.project
        if release.sdist is not None and release.wheel is None and project.fail is None:
            folder = built / f"{project.canonical_name}-{project.version}"
            folder.mkdir(parents=True, exist_ok=True)
            write_wheel(project, folder, origin="built")


def lock_catalog(
    root: Path, index: FakeIndex, releases: Iterable[BuiltRelease] | None = None
) -> Path:
    """Lock :data:`CATALOG_REQUIREMENTS` cold in a new checkout at ``root``, through doit.

    Given the catalog's ``releases``, discovery finds the wheels of its sdist-only
    build tools already built (:func:`seed_discovery_wheels`); every hook still runs.
    """
    ws = make_workspace(root, index)
    if releases is not None:
        seed_discovery_wheels(root, releases)
    ws.collection(CATALOG_REQUIREMENTS, name=CATALOG_COLLECTION)
    result = ws.doit("lock")
    if result.returncode != 0:
        raise RuntimeError(f"locking the catalog failed\n{result.stdout}\n{result.stderr}")
    return root


def make_workspace(root: Path, index: FakeIndex | None) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dodo.py", root / "dodo.py")
    # doit finds affineur's plugins in the pyproject.toml of the folder it starts in.
    doit_table = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["doit"]
    (root / "pyproject.toml").write_text(tomlkit.dumps({"tool": {"doit": doit_table}}))
    ws = Workspace(root, index)
    if index is not None:
        ws.variant()
    return ws


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result
