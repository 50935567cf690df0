"""Shared pytest fixtures. Each block belongs to one part of the test harness."""

from __future__ import annotations

# --- bytecode ----------------------------------------------------------------------------
import os
import sys

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Keep compiled bytecode in pytest's cache where PYTHONDONTWRITEBYTECODE is set.

    Most tests start ``doit`` or ``affineur`` in a subprocess, and without written
    bytecode each of them compiles affineur's modules again (0.1 to 0.2 s of CPU a
    process, a tenth of the default run); pytest rewrites every test module again
    too. The setting keeps bytecode out of source trees (container images set it),
    so the run's processes share it through PYTHONPYCACHEPREFIX instead, in
    ``.pytest_cache``, and it outlives the run.
    """
    cache = getattr(config, "cache", None)
    if cache is None or not sys.dont_write_bytecode or sys.pycache_prefix:
        return  # bytecode is written as usual, or the user chose where
    prefix = str(cache.mkdir("pycache"))
    sys.pycache_prefix = prefix
    sys.dont_write_bytecode = False
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


# --- end of bytecode ---------------------------------------------------------------------


# --- fake ecosystem (tests/ecosystem) ---------------------------------------------------
from collections.abc import Iterator  # noqa: E402

from tests.ecosystem import BuiltRelease, FakeIndex, build_catalog, standard_catalog  # noqa: E402


@pytest.fixture(scope="session")
def fake_catalog_releases(tmp_path_factory: pytest.TempPathFactory) -> list[BuiltRelease]:
    """The standard catalog's sdists and wheels, built once per session (bytes are fixed)."""
    return build_catalog(standard_catalog(), tmp_path_factory.mktemp("fake-catalog"))


@pytest.fixture
def fake_index(fake_catalog_releases: list[BuiltRelease]) -> Iterator[FakeIndex]:
    """A running index serving the standard catalog; fresh (log, failures, content) per test."""
    with FakeIndex() as index:
        index.add(*fake_catalog_releases)
        yield index


@pytest.fixture
def empty_fake_index() -> Iterator[FakeIndex]:
    """A running index with nothing on it: ``.add(FakeProject(...))`` a custom catalog."""
    with FakeIndex() as index:
        yield index


# --- end of fake ecosystem fixtures -----------------------------------------------------


# --- workspaces (tests/workspace.py) ------------------------------------------------------
import fcntl  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from tests.workspace import (  # noqa: E402
    Workspace,
    close_fork_server,
    copy_discovery_caches,
    lock_catalog,
    make_workspace,
)


@pytest.fixture(scope="session", autouse=True)
def fork_server() -> Iterator[None]:
    """Each worker's fork server (tests/forkserver.py) ends with the session, waited for."""
    yield
    close_fork_server()


def _shared_dir(factory: pytest.TempPathFactory) -> Path:
    """A folder every pytest-xdist worker of this run sees (the session's own without xdist)."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def catalog_checkout(
    tmp_path_factory: pytest.TempPathFactory, fake_catalog_releases: list[BuiltRelease]
) -> Path:
    """A checkout that locked the whole standard catalog through ``doit lock``.

    Cold but for the wheels of sdist-only build tools, which pip would build: every
    hook runs.

    Made once per run, whatever the number of xdist workers: the first worker to
    get here locks, the others wait on the same file lock and then read it.
    Tests only read it (lock/catalog/cpu/graph.json, and build/ through copies).
    """
    shared = _shared_dir(tmp_path_factory)
    root = shared / "catalog-lock"
    with (shared / "catalog-lock.flock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not (root / "complete").exists():
            if root.exists():
                shutil.rmtree(root)
            with FakeIndex() as index:
                index.add(*fake_catalog_releases)
                lock_catalog(root / "checkout", index, fake_catalog_releases)
            (root / "complete").touch()
    return root / "checkout"


@pytest.fixture
def workspace(tmp_path: Path, fake_index: FakeIndex, catalog_checkout: Path) -> Workspace:
    """An affineur checkout whose only variant, ``cpu``, uses the fake index.

    It starts with the discovery caches of :func:`catalog_checkout`, so locking
    the standard catalog runs no build hook again; use ``cold_workspace`` when
    discovery itself is under test.
    """
    ws = make_workspace(tmp_path / "checkout", fake_index)
    copy_discovery_caches(catalog_checkout, ws.root)
    return ws


@pytest.fixture
def cold_workspace(tmp_path: Path, fake_index: FakeIndex) -> Workspace:
    """Like ``workspace``, with nothing cached: every lock discovers from scratch."""
    return make_workspace(tmp_path / "checkout", fake_index)


# --- end of workspaces --------------------------------------------------------------------


# --- remote storage (tests/storage.py) ------------------------------------------------------
from tests.storage import S3Server, s3_server  # noqa: E402


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """An S3-compatible server on 127.0.0.1 (moto's server mode); each test makes its bucket."""
    with s3_server() as server:
        yield server


# --- end of remote storage --------------------------------------------------------------------


# --- Rust (tests/ecosystem/cargo.py) ------------------------------------------------------------
import subprocess  # noqa: E402

RUST_BACKEND = ("setuptools", "setuptools-rust", "semantic-version")
"""A real Rust build backend and what it needs, taken as upstream wheels."""


@pytest.fixture(scope="session")
def rust_backend_wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """setuptools-rust and what it needs, as upstream wheels, through pip's own configuration."""
    dest = tmp_path_factory.mktemp("rust-backend")
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    done = subprocess.run(
        [*pip, f"--dest={dest}", *RUST_BACKEND],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"setuptools-rust is not reachable through pip: {done.stderr[-300:]}")
    return sorted(dest.glob("*.whl"))


# --- end of Rust ---------------------------------------------------------------------------------
