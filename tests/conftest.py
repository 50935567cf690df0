"""Shared pytest fixtures. Each block belongs to one part of the test harness."""

from __future__ import annotations

# --- fake ecosystem (tests/ecosystem) ---------------------------------------------------
from collections.abc import Iterator

import pytest

from tests.ecosystem import BuiltRelease, FakeIndex, build_catalog, standard_catalog


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
from pathlib import Path  # noqa: E402

from tests.workspace import Workspace, make_workspace  # noqa: E402


@pytest.fixture
def workspace(tmp_path: Path, fake_index: FakeIndex) -> Workspace:
    """An affineur checkout whose only variant, ``cpu``, uses the fake index."""
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
