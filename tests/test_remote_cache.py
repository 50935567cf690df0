"""The remote build cache, end to end through doit, against real servers on 127.0.0.1.

Every checkout here gets the same lock (as teammates get it from git), made once
for the module, so the tests spend their time building and sharing, not locking.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.ecosystem import BuiltRelease, FakeIndex
from tests.storage import SECRET, S3Server, static_server
from tests.workspace import Workspace, make_workspace, ok

# The module's tests share what its module fixtures build: one worker builds it, once.
pytestmark = pytest.mark.xdist_group("remote-cache")

TREE = ["lib-c"]
"""lib-c and the build tool it needs (fakebuild-core): a build environment from the cache."""
BUCKET = "team-cache"


@pytest.fixture(scope="module")
def index(fake_catalog_releases: list[BuiltRelease]) -> Iterator[FakeIndex]:
    with FakeIndex() as served:
        served.add(*fake_catalog_releases)
        yield served


@pytest.fixture(scope="module")
def variant_text(s3: S3Server) -> str:
    return s3.variant_setting(BUCKET)


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory, index: FakeIndex, variant_text: str) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("remote") / "locker", index)
    ws.variant(extra=variant_text)
    ws.collection(TREE)
    ok(ws.doit("lock"))
    return ws.root / "lock"


@pytest.fixture
def bucket(s3: S3Server) -> str:
    """The bucket the variant names, empty at the start of each test."""
    client = s3.client()
    if BUCKET in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        for key in s3.keys(BUCKET):
            client.delete_object(Bucket=BUCKET, Key=key)
    else:
        client.create_bucket(Bucket=BUCKET)
    return BUCKET


Clone = Callable[[str], Workspace]


@pytest.fixture
def clone(tmp_path: Path, index: FakeIndex, variant_text: str, locked: Path) -> Clone:
    """A new checkout of the same repository (same variant, collection and lock)."""

    def make(name: str) -> Workspace:
        ws = make_workspace(tmp_path / name, index)
        ws.variant(extra=variant_text)
        ws.collection(TREE)
        shutil.copytree(locked, ws.root / "lock")
        return ws

    return make


def wheels(ws: Workspace) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (ws.root / "dist/demo/cpu/files").glob("*.whl")}


def files_containing(root: Path, text: str) -> list[Path]:
    data = text.encode()
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


@pytest.mark.slow
def test_a_second_checkout_builds_nothing_and_reuses_everything(
    clone: Clone, s3: S3Server, bucket: str
) -> None:
    first = clone("first")
    run = ok(first.doit(env=s3.env))
    assert set(first.outcomes().values()) == {"built"}, run.stderr
    stored = s3.keys(bucket)
    assert sum(k.endswith("/entry.json") for k in stored) == 2
    assert all(k.startswith("team/v1/builds/") for k in stored)

    second = clone("second")
    run = ok(second.doit(env=s3.env))
    assert second.outcomes() == {
        "build:cpu:fakebuild-core-1.0": "remote",
        "build:cpu:lib-c-1.0": "remote",
    }
    output = run.stdout + run.stderr
    assert "reused from remote cache: lib-c==1.0 (cpu)" in output
    assert "2 reused from remote cache" in output
    assert not list((second.root / "build").glob("work/*")), "nothing was built"
    assert wheels(second) == wheels(first)
    # The credentials reached the storage library, and nothing else.
    for ws in (first, second):
        assert files_containing(ws.root, SECRET) == []
    assert SECRET not in output

    # The entries are in the local cache now: the next run is a no-op.
    again = ok(second.doit(env=s3.env))
    assert set(second.outcomes().values()) == {"uptodate"}, again.stderr


@pytest.mark.slow
def test_a_corrupt_remote_entry_is_refused_and_rebuilt(
    clone: Clone, s3: S3Server, bucket: str
) -> None:
    first = clone("first")
    ok(first.doit(env=s3.env))
    client = s3.client()
    entries = {
        k: json.loads(client.get_object(Bucket=bucket, Key=k)["Body"].read())
        for k in s3.keys(bucket)
        if k.endswith("/entry.json")
    }
    ((where, entry),) = [(k, e) for k, e in entries.items() if e["name"] == "lib-c"]
    wheel_key = where.rsplit("/", 1)[0] + "/" + entry["wheel_object"]
    good = client.get_object(Bucket=bucket, Key=wheel_key)["Body"].read()
    # Same size, different bytes: only the hash can tell.
    client.put_object(Bucket=bucket, Key=wheel_key, Body=good[:-1] + bytes([good[-1] ^ 1]))

    second = clone("second")
    run = ok(second.doit(env=s3.env))
    assert second.outcomes() == {
        "build:cpu:fakebuild-core-1.0": "remote",
        "build:cpu:lib-c-1.0": "built",
    }
    output = run.stdout + run.stderr
    assert "remote cache: ignored the entry of lib-c==1.0" in output
    assert "the wheel's sha256 is" in output
    assert wheels(second) == wheels(first)


@pytest.mark.slow
def test_a_read_only_http_mirror_is_used_and_never_written(clone: Clone, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    writer = clone("writer")
    # The environment's setting replaces the variant's, for every variant.
    ok(writer.doit(env={"AFFINEUR_REMOTE_CACHE": shared.as_uri()}))
    entries = sorted(shared.rglob("entry.json"))
    assert len(entries) == 2
    lib_c = next(p for p in entries if json.loads(p.read_text())["name"] == "lib-c")
    shutil.rmtree(lib_c.parent)
    before = sorted(p.relative_to(shared) for p in shared.rglob("*"))

    with static_server(shared) as url:
        reader = clone("reader")
        run = ok(reader.doit(env={"AFFINEUR_REMOTE_CACHE": url + "/"}))
    assert reader.outcomes() == {
        "build:cpu:fakebuild-core-1.0": "remote",
        "build:cpu:lib-c-1.0": "built",
    }, run.stderr
    assert sorted(p.relative_to(shared) for p in shared.rglob("*")) == before


@pytest.mark.slow
def test_a_failed_upload_warns_and_the_build_passes(clone: Clone, s3: S3Server) -> None:
    ws = clone("ws")
    run = ok(ws.doit(env={**s3.env, "AFFINEUR_REMOTE_CACHE": "s3://no-such-bucket/x",
                          "AWS_ENDPOINT_URL": s3.url}))  # fmt: skip
    assert set(ws.outcomes().values()) == {"built"}
    assert "warning: remote cache: could not upload" in run.stdout + run.stderr


@pytest.mark.slow
def test_credentials_in_the_variant_are_refused(tmp_path: Path, index: FakeIndex) -> None:
    ws = make_workspace(tmp_path / "ws", index)
    ws.variant(extra="remote_cache:\n  url: s3://bucket/p\n  options: {secret: hunter2}\n")
    ws.collection(TREE)
    run = ws.doit()
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "remote cache option 'secret' is a credential" in output
    assert "hunter2" not in output
    assert "Traceback" not in output
