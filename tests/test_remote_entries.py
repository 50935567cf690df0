"""Remote cache settings and entry checks, without doit: a file:// store in a temp dir."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from affineur.build import BuildCache, BuildKey, RemoteCache
from affineur.config import Executor, effective_executor, effective_remote_cache
from affineur.errors import AffineurError
from affineur.progress import Event, Notice

KEY = BuildKey("a" * 64)
OTHER = BuildKey("b" * 64)


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def report(self, event: Event) -> None:
        assert isinstance(event, Notice)
        self.lines.append(event.text)


def local_entry(cache: BuildCache, key: BuildKey, *, stamped: str | None = None) -> None:
    with cache.staging(key) as staging:
        wheel = staging / "demo-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr("demo/__init__.py", "")
            zf.writestr(
                "demo-1.0.dist-info/affineur/build.json",
                json.dumps({"build_key": stamped or key}),
            )
        (staging / "build.log").write_text("built\n")
        cache.commit(
            key, staging, {"name": "demo", "version": "1.0", "build_key": key, "wheel": wheel.name}
        )


@pytest.fixture
def remote(tmp_path: Path) -> tuple[RemoteCache, Lines]:
    said = Lines()
    setting = effective_remote_cache({"url": (tmp_path / "remote").as_uri()}, {}, origin="v.yaml")
    assert setting is not None
    return RemoteCache(setting, reporter=said), said


def test_an_entry_round_trips_and_records_its_hash(
    tmp_path: Path, remote: tuple[RemoteCache, Lines]
) -> None:
    cache, _ = remote
    mine = BuildCache(tmp_path / "mine")
    local_entry(mine, KEY)
    assert cache.push(mine.get(KEY))  # type: ignore[arg-type]
    theirs = BuildCache(tmp_path / "theirs")
    got = cache.fetch(KEY, theirs, name="Demo", version="1.0")
    assert got is not None
    assert got.wheel.read_bytes() == mine.get(KEY).wheel.read_bytes()  # type: ignore[union-attr]
    assert len(got.record()["sha256"]) == 64
    assert got.log.read_text() == "built\n"
    assert cache.fetch(OTHER, theirs, name="demo", version="1.0") is None


def test_an_entry_filed_under_another_key_is_refused(
    tmp_path: Path, remote: tuple[RemoteCache, Lines]
) -> None:
    cache, said = remote
    mine = BuildCache(tmp_path / "mine")
    local_entry(mine, KEY)
    cache.push(mine.get(KEY))  # type: ignore[arg-type]
    # Someone copies a valid entry to another key's place.
    builds = tmp_path / "remote" / "v1" / "builds"
    (builds / KEY).rename(builds / OTHER)
    theirs = BuildCache(tmp_path / "theirs")
    assert cache.fetch(OTHER, theirs, name="demo", version="1.0") is None
    assert "it is the entry of build key aaaaaaaaaaaa" in said.lines[-1]
    assert theirs.get(OTHER) is None


def test_a_wheel_stamped_for_another_key_is_refused(
    tmp_path: Path, remote: tuple[RemoteCache, Lines]
) -> None:
    cache, said = remote
    mine = BuildCache(tmp_path / "mine")
    local_entry(mine, KEY, stamped=OTHER)
    cache.push(mine.get(KEY))  # type: ignore[arg-type]
    assert cache.fetch(KEY, BuildCache(tmp_path / "t"), name="demo", version="1.0") is None
    assert "the wheel was built for build key bbbbbbbbbbbb" in said.lines[-1]


def test_a_broken_entry_file_is_refused(tmp_path: Path, remote: tuple[RemoteCache, Lines]) -> None:
    cache, said = remote
    entry = tmp_path / "remote" / "v1" / "builds" / KEY / "entry.json"
    entry.parent.mkdir(parents=True)
    entry.write_text('{"format": 1}')
    assert cache.fetch(KEY, BuildCache(tmp_path / "t"), name="demo", version="1.0") is None
    assert "does not match its schema" in said.lines[-1]


def test_a_read_only_cache_uploads_nothing(tmp_path: Path) -> None:
    setting = effective_remote_cache(
        {"url": (tmp_path / "r").as_uri(), "mode": "read-only"}, {}, origin="v.yaml"
    )
    assert setting is not None and not setting.writable
    mine = BuildCache(tmp_path / "mine")
    local_entry(mine, KEY)
    assert not RemoteCache(setting).push(mine.get(KEY))  # type: ignore[arg-type]
    assert not (tmp_path / "r").exists()


def test_settings_precedence_and_modes() -> None:
    variant = {"url": "s3://team/cache", "options": {"endpoint_url": "http://127.0.0.1:9000"}}
    assert effective_remote_cache(None, {}) is None
    mine = effective_remote_cache(variant, {}, origin="variants/cpu.yaml")
    assert mine is not None and (mine.url, mine.mode) == ("s3://team/cache", "read-write")
    ci = effective_remote_cache(variant, {"AFFINEUR_REMOTE_CACHE": "s3://near/ci"})
    assert ci is not None and ci.url == "s3://near/ci"
    pr = effective_remote_cache(variant, {"AFFINEUR_REMOTE_CACHE_MODE": "read-only"})
    assert pr is not None and pr.mode == "read-only"
    assert effective_remote_cache(variant, {"AFFINEUR_REMOTE_CACHE_MODE": "off"}) is None
    mirror = effective_remote_cache({"url": "https://mirror.example/cache"}, {})
    assert mirror is not None and mirror.mode == "read-only"


@pytest.mark.parametrize(
    ("variant", "environ", "message"),
    [
        ({"url": "https://m.example/c", "mode": "read-write"}, {}, "is a read-only mirror"),
        ({"url": "s3://u:p@bucket/c"}, {}, "holds credentials"),
        (
            {"url": "s3://b/c", "options": {"client_kwargs": {"aws_secret_access_key": "x"}}},
            {},
            "'client_kwargs.aws_secret_access_key' is a credential",
        ),
        (None, {"AFFINEUR_REMOTE_CACHE": "bucket/cache"}, "is not a URL"),
        (None, {"AFFINEUR_REMOTE_CACHE_MODE": "sometimes"}, "expected read-only"),
    ],
)
def test_bad_settings_are_refused(
    variant: dict[str, object] | None, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(AffineurError, match=message) as caught:
        effective_remote_cache(variant, environ, origin="variants/cpu.yaml")
    assert caught.value.stage == "config"
    assert "hunter2" not in str(caught.value) + (caught.value.hint or "")


def test_executor_precedence() -> None:
    assert effective_executor(None, {}) == Executor()
    assert effective_executor("dask://a:8786", {}) == Executor("dask", "a:8786")
    assert effective_executor("dask://a:8786", {"AFFINEUR_EXECUTOR": "local"}) == Executor()
    assert effective_executor(None, {"AFFINEUR_EXECUTOR": "local"}, "dask://b:1").address == "b:1"
    with pytest.raises(AffineurError, match="neither 'local' nor dask://host:port"):
        effective_executor(None, {"AFFINEUR_EXECUTOR": "ray://x"})


def test_a_missing_extra_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib.util

    from affineur.config import Variant
    from affineur.run._dask import Executors
    from affineur.run._open import RemoteCaches

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("fsspec", "distributed") else real(name, *a),
    )
    variant = Variant(
        name="cpu", description="", python="3.12", platform={}, indexes=(), discovery="wheels",
        env={}, resources={}, defaults={}, changelog=(), timeout=None, network_isolation=True,
        file=tmp_path / "variants/cpu.yaml", remote_cache={"url": "s3://b/p"},
        executor="dask://127.0.0.1:8786",
    )  # fmt: skip
    remotes = RemoteCaches(tmp_path, Lines(), environ={})
    with pytest.raises(AffineurError, match="needs affineur's 'remote' extra") as caught:
        remotes(variant)
    assert caught.value.hint == "pip install 'affineur[remote]'"
    with pytest.raises(AffineurError, match="needs affineur's 'dask' extra"):
        Executors({})(variant)
