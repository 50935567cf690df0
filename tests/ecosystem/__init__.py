"""A hermetic fake Python ecosystem: fake projects, real sdists and wheels, a local index.

    from tests.ecosystem import FakeIndex, FakeProject, standard_catalog

    with FakeIndex() as index:
        index.add(FakeProject("demo", "1.0", requires=("lib-a",)))
        index.url        # http://127.0.0.1:PORT/simple/
        index.requests   # every request served, as LoggedRequest

The pytest fixtures built on this live in tests/conftest.py.
"""

from tests.ecosystem.catalog import TEST_FLAG, standard_catalog
from tests.ecosystem.piptools import clean_pip_env, run_pip
from tests.ecosystem.projects import (
    BACKEND_SOURCE,
    IN_TREE,
    SELF_HOSTED,
    FakeProject,
    dist_name,
    normalize,
)
from tests.ecosystem.sdist import (
    FIXED_EPOCH,
    BuiltRelease,
    build_catalog,
    build_release,
    wheel_metadata,
    write_sdist,
    write_wheel,
)
from tests.ecosystem.server import (
    HTML_V1,
    JSON_V1,
    FakeIndex,
    IndexFile,
    LoggedRequest,
)

__all__ = [
    "BACKEND_SOURCE",
    "FIXED_EPOCH",
    "HTML_V1",
    "IN_TREE",
    "JSON_V1",
    "SELF_HOSTED",
    "TEST_FLAG",
    "BuiltRelease",
    "FakeIndex",
    "FakeProject",
    "IndexFile",
    "LoggedRequest",
    "build_catalog",
    "build_release",
    "clean_pip_env",
    "dist_name",
    "normalize",
    "run_pip",
    "standard_catalog",
    "wheel_metadata",
    "write_sdist",
    "write_wheel",
]
