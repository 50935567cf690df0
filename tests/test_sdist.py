"""The sdist store (hash on every use) and safe unpacking of hostile archives."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from affineur.errors import AffineurError
from affineur.index import DistFile, SdistStore, make_file, sha256_file
from affineur.pep517 import read_pkg_info, safe_extract

PKG_INFO = b"Metadata-Version: 2.2\nName: demo\nVersion: 1.0\nDynamic: Version\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- archive builders ---------------------------------------------------------------------


def tar_entry(
    name: str,
    data: bytes = b"",
    *,
    kind: bytes = tarfile.REGTYPE,
    link: str = "",
    mode: int = 0o644,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = mode
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def make_tar(path: Path, entries: Iterable[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:bz2" if path.name.endswith(".bz2") else "w:gz") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def good_entries(top: str = "demo-1.0") -> list[tuple[tarfile.TarInfo, bytes]]:
    return [
        tar_entry(f"{top}/", kind=tarfile.DIRTYPE, mode=0o755),
        tar_entry(f"{top}/PKG-INFO", PKG_INFO),
        tar_entry(f"{top}/configure", b"#!/bin/sh\n", mode=0o755),
        tar_entry(f"{top}/src/demo/__init__.py", b"x = 1\n"),
        tar_entry(f"{top}/src/demo.egg-info/PKG-INFO", b"Name: nested\n"),
        tar_entry(f"{top}/link", kind=tarfile.SYMTYPE, link="src/demo/__init__.py"),
        tar_entry(f"{top}/hard", kind=tarfile.LNKTYPE, link=f"{top}/configure", mode=0o755),
    ]


# --- safe_extract: good archives ----------------------------------------------------------


@pytest.mark.parametrize("name", ["demo-1.0.tar.gz", "demo-1.0.tgz", "demo-1.0.tar.bz2"])
def test_good_tar_unpacks_with_links_and_executable_bits(tmp_path: Path, name: str) -> None:
    archive = make_tar(tmp_path / name, good_entries())
    top = safe_extract(archive, tmp_path / "out")
    assert top == tmp_path / "out" / "demo-1.0"
    assert (top / "PKG-INFO").read_bytes() == PKG_INFO
    assert (top / "link").is_symlink() and (top / "link").read_text() == "x = 1\n"
    assert (top / "hard").read_bytes() == b"#!/bin/sh\n"
    assert (top / "configure").stat().st_mode & stat.S_IXUSR
    assert not (top / "PKG-INFO").stat().st_mode & stat.S_IXUSR
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["demo-1.0"]


def test_tar_with_dot_slash_prefix_unpacks(tmp_path: Path) -> None:
    entries = [
        tar_entry(".", kind=tarfile.DIRTYPE, mode=0o755),
        tar_entry("./demo-1.0/setup.py", b"pass\n"),
    ]
    top = safe_extract(make_tar(tmp_path / "demo-1.0.tar.gz", entries), tmp_path / "out")
    assert (top / "setup.py").read_text() == "pass\n"


def test_unpacked_files_get_the_modes_and_owners_of_tarfiles_data_filter(tmp_path: Path) -> None:
    from affineur.pep517._unpack import _data_filter

    entries = []
    for mode in (0o644, 0o755, 0o4755, 0o777, 0o600, 0o444, 0o070, 0o7777, 0o001):
        for kind in (tarfile.REGTYPE, tarfile.DIRTYPE):
            info, _ = tar_entry(f"demo-1.0/m{mode:o}", kind=kind, mode=mode)
            info.uid, info.gid, info.uname, info.gname = 1234, 5678, "someone", "staff"
            entries.append(info)
    for info in entries:
        ours, theirs = _data_filter(info, str(tmp_path)), tarfile.data_filter(info, str(tmp_path))
        assert ours.get_info() == theirs.get_info(), (info.name, info.type)
        assert (ours.mode, ours.uid, ours.uname) == (theirs.mode, theirs.uid, theirs.uname)
    # Links and special files still meet the filter itself.
    with pytest.raises(tarfile.FilterError):
        _data_filter(tar_entry("demo-1.0/l", kind=tarfile.SYMTYPE, link="/etc")[0], str(tmp_path))
    with pytest.raises(tarfile.FilterError):
        _data_filter(tar_entry("demo-1.0/fifo", kind=tarfile.FIFOTYPE)[0], str(tmp_path))


@pytest.mark.parametrize("name", ["demo-1.0.tar.gz", "demo-1.0.tar.bz2", "demo-1.0.zip"])
def test_unpacking_tells_the_newest_member_time_that_builds_take(tmp_path: Path, name: str) -> None:
    from affineur.build._builder import source_date_epoch
    from affineur.pep517 import unpack_sdist

    archive = tmp_path / name
    if name.endswith(".zip"):
        make_zip(archive, {"demo-1.0/a.py": (b"a", 0o644), "demo-1.0/b.py": (b"b", 0o644)})
        with zipfile.ZipFile(archive, "a") as zf:
            zf.writestr(zipfile.ZipInfo("demo-1.0/new.py", (2021, 5, 6, 7, 8, 10)), b"new")
    else:
        entries = good_entries()
        for i, (info, _) in enumerate(entries):
            info.mtime = 1_600_000_000 + 1000 * i
        make_tar(archive, entries)
    unpacked = unpack_sdist(archive, tmp_path / "out")
    assert unpacked.root == tmp_path / "out" / "demo-1.0"
    assert unpacked.newest > 1_500_000_000
    assert max(unpacked.newest, 315532800) == source_date_epoch(archive)


def make_zip(path: Path, entries: dict[str, tuple[bytes, int]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, (data, mode) in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | mode) << 16
            zf.writestr(info, data)
    return path


def test_good_zip_unpacks_and_keeps_executable_bits(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "demo-1.0.zip",
        {
            "demo-1.0/PKG-INFO": (PKG_INFO, 0o644),
            "demo-1.0/bin/run.sh": (b"#!/bin/sh\n", 0o755),
        },
    )
    top = safe_extract(archive, tmp_path / "out")
    assert (top / "PKG-INFO").read_bytes() == PKG_INFO
    assert (top / "bin" / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (top / "PKG-INFO").stat().st_mode & 0o777 == 0o644


# --- safe_extract: hostile archives -----------------------------------------------------------


HOSTILE = {
    "absolute": [tar_entry("/etc/evil", b"x")],
    "dotdot": [tar_entry("demo-1.0/../../evil", b"x")],
    "symlink-out": [tar_entry("demo-1.0/l", kind=tarfile.SYMTYPE, link="../../etc/passwd")],
    "symlink-absolute": [tar_entry("demo-1.0/l", kind=tarfile.SYMTYPE, link="/etc/passwd")],
    "symlink-to-sibling": [tar_entry("demo-1.0/l", kind=tarfile.SYMTYPE, link="../other")],
    "hardlink-out": [tar_entry("demo-1.0/h", kind=tarfile.LNKTYPE, link="../etc/passwd")],
    "hardlink-absolute": [tar_entry("demo-1.0/h", kind=tarfile.LNKTYPE, link="/etc/passwd")],
    "device": [tar_entry("demo-1.0/null", kind=tarfile.CHRTYPE)],
    "fifo": [tar_entry("demo-1.0/pipe", kind=tarfile.FIFOTYPE)],
    "through-symlink": [
        tar_entry("demo-1.0/d", kind=tarfile.SYMTYPE, link="sub"),
        tar_entry("demo-1.0/sub/", kind=tarfile.DIRTYPE, mode=0o755),
        tar_entry("demo-1.0/d/file", b"x"),
    ],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tar_is_refused_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    entries = [*good_entries(), *HOSTILE[case]]
    archive = make_tar(tmp_path / "demo-1.0.tar.gz", entries)
    out = tmp_path / "out"
    with pytest.raises(AffineurError) as err:
        safe_extract(archive, out)
    e = err.value
    assert e.stage == "unpack" and e.file == str(archive)
    assert "demo-1.0.tar.gz" in e.message and "member" in e.message
    assert list(out.iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_symlink_chain_that_resolves_outside_is_refused(tmp_path: Path) -> None:
    # Each link looks in-tree on its own: s1 -> d, d/s2 -> .., x -> s1/s2/..;
    # followed on disk, x leads to the directory above the tree.
    entries = [
        tar_entry("demo-1.0/", kind=tarfile.DIRTYPE, mode=0o755),
        tar_entry("demo-1.0/d/", kind=tarfile.DIRTYPE, mode=0o755),
        tar_entry("demo-1.0/s1", kind=tarfile.SYMTYPE, link="d"),
        tar_entry("demo-1.0/d/s2", kind=tarfile.SYMTYPE, link=".."),
        tar_entry("demo-1.0/x", kind=tarfile.SYMTYPE, link="s1/s2/.."),
    ]
    archive = make_tar(tmp_path / "demo-1.0.tar.gz", entries)
    with pytest.raises(AffineurError) as err:
        safe_extract(archive, tmp_path / "out")
    assert err.value.stage == "unpack" and "demo-1.0/x" in err.value.message
    assert list((tmp_path / "out").iterdir()) == []


def test_symlink_chain_deep_in_the_tree_is_found(tmp_path: Path) -> None:
    # The same chain, reached from a link two folders down: the check walks them all.
    entries = [
        tar_entry("demo-1.0/", kind=tarfile.DIRTYPE, mode=0o755),
        tar_entry("demo-1.0/d/", kind=tarfile.DIRTYPE, mode=0o755),
        tar_entry("demo-1.0/a/b/ok.py", data=b"x = 1\n"),
        tar_entry("demo-1.0/s1", kind=tarfile.SYMTYPE, link="d"),
        tar_entry("demo-1.0/d/s2", kind=tarfile.SYMTYPE, link=".."),
        tar_entry("demo-1.0/a/b/x", kind=tarfile.SYMTYPE, link="../../s1/s2/.."),
    ]
    archive = make_tar(tmp_path / "demo-1.0.tar.gz", entries)
    with pytest.raises(AffineurError) as err:
        safe_extract(archive, tmp_path / "out")
    assert err.value.stage == "unpack" and "demo-1.0/a/b/x" in err.value.message
    assert list((tmp_path / "out").iterdir()) == []


def test_zip_with_dotdot_or_absolute_member_is_refused(tmp_path: Path) -> None:
    for i, bad in enumerate(["demo-1.0/../../evil", "/abs/evil", "demo-1.0\\..\\..\\evil"]):
        archive = make_zip(
            tmp_path / f"demo-{i}.zip", {"demo-1.0/ok": (b"", 0o644), bad: (b"x", 0o644)}
        )
        with pytest.raises(AffineurError) as err:
            safe_extract(archive, tmp_path / "out")
        assert err.value.stage == "unpack" and repr(bad) in err.value.message


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ([tar_entry("a/x", b""), tar_entry("b/y", b"")], "found a, b"),
        ([tar_entry("setup.py", b"")], "not a directory"),
        ([tar_entry(".", kind=tarfile.DIRTYPE)], "found nothing"),
    ],
)
def test_archive_needs_exactly_one_top_directory(
    tmp_path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], words: str
) -> None:
    archive = make_tar(tmp_path / "demo-1.0.tar.gz", entries)
    with pytest.raises(AffineurError) as err:
        safe_extract(archive, tmp_path / "out")
    assert err.value.stage == "unpack" and words in err.value.message


def test_truncated_archive_is_an_unpack_error(tmp_path: Path) -> None:
    whole = make_tar(tmp_path / "whole.tar.gz", good_entries()).read_bytes()
    archive = tmp_path / "demo-1.0.tar.gz"
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(AffineurError) as err:
        safe_extract(archive, tmp_path / "out")
    assert err.value.stage == "unpack" and "truncated" in (err.value.hint or "")
    assert list((tmp_path / "out").iterdir()) == []


def test_existing_target_is_not_overwritten(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "demo-1.0.tar.gz", good_entries())
    (tmp_path / "out" / "demo-1.0").mkdir(parents=True)
    with pytest.raises(AffineurError) as err:
        safe_extract(archive, tmp_path / "out")
    assert "already exists" in err.value.message


# --- read_pkg_info -------------------------------------------------------------------------------


def test_read_pkg_info_from_tar_and_zip_without_unpacking(tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "demo-1.0.tar.gz", good_entries())
    assert read_pkg_info(tar) == PKG_INFO
    zipped = make_zip(
        tmp_path / "demo-1.0.zip",
        {"demo-1.0/x/PKG-INFO": (b"nested", 0o644), "demo-1.0/PKG-INFO": (PKG_INFO, 0o644)},
    )
    assert read_pkg_info(zipped) == PKG_INFO
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-1.0.tar.gz", "demo-1.0.zip"]


def test_read_pkg_info_ignores_nested_copies(tmp_path: Path) -> None:
    entries = [e for e in good_entries() if e[0].name != "demo-1.0/PKG-INFO"]
    assert read_pkg_info(make_tar(tmp_path / "demo-1.0.tar.gz", entries)) is None


# --- the store ---------------------------------------------------------------------------------


class FakeIndex:
    """Serves files from memory, the way IndexClient.find_file/download do."""

    def __init__(self, files: dict[str, bytes], *, listed_sha: str | None = None) -> None:
        self.files = files
        self.listed_sha = listed_sha
        self.downloads: list[DistFile] = []

    def find_file(self, project: str, filename: str) -> DistFile:
        data = self.files[filename]
        found = make_file(
            canonicalize_name(project),
            filename,
            f"http://fake/{filename}",
            sha256=self.listed_sha or sha(data),
        )
        assert found is not None
        return found

    def download(self, file: DistFile, dest: Path) -> Path:
        self.downloads.append(file)
        data = self.files[file.filename]
        if file.sha256 and sha(data) != file.sha256:
            raise AffineurError("hash mismatch", stage="hash")
        target = dest / file.filename
        target.write_bytes(data)
        return target


def test_ensure_downloads_once_then_verifies_the_present_file(tmp_path: Path) -> None:
    data = b"archive bytes"
    store = SdistStore(tmp_path / "sdists")
    index = FakeIndex({"demo-1.0.tar.gz": data})
    path = store.ensure("demo", "demo-1.0.tar.gz", sha(data), index)
    assert path == store.path("demo-1.0.tar.gz") and path.read_bytes() == data
    # The download was checked against the lock's hash, not only the index's.
    assert [f.sha256 for f in index.downloads] == [sha(data)]
    assert store.ensure("demo", "demo-1.0.tar.gz", sha(data).upper(), None) == path
    assert len(index.downloads) == 1


def test_present_file_with_wrong_hash_is_reported_not_replaced(tmp_path: Path) -> None:
    store = SdistStore(tmp_path)
    path = store.path("demo-1.0.tar.gz")
    path.write_bytes(b"good")
    assert store.ensure("demo", path.name, sha(b"good"), None) == path
    path.write_bytes(b"evil")  # same size: only the hash tells
    os.utime(path, ns=(1, 1))
    index = FakeIndex({path.name: b"good"})
    with pytest.raises(AffineurError) as err:
        store.ensure("demo", path.name, sha(b"good"), index)
    e = err.value
    assert e.stage == "hash" and e.package == "demo"
    assert path.name in e.message and sha(b"good") in e.message and sha(b"evil") in e.message
    assert "delete" in (e.hint or "")
    assert path.read_bytes() == b"evil" and index.downloads == []


def test_missing_file_offline_is_a_download_error(tmp_path: Path) -> None:
    with pytest.raises(AffineurError) as err:
        SdistStore(tmp_path).ensure("demo", "demo-1.0.tar.gz", "00" * 32, None)
    assert err.value.stage == "download" and "demo-1.0.tar.gz" in err.value.message


def test_index_listing_another_hash_than_the_lock_is_refused(tmp_path: Path) -> None:
    index = FakeIndex({"demo-1.0.tar.gz": b"new upload"}, listed_sha=sha(b"new upload"))
    with pytest.raises(AffineurError) as err:
        SdistStore(tmp_path).ensure("demo", "demo-1.0.tar.gz", sha(b"locked"), index)
    assert err.value.stage == "hash" and index.downloads == []
    assert not (tmp_path / "demo-1.0.tar.gz").exists()


def test_store_refuses_path_like_file_names(tmp_path: Path) -> None:
    store = SdistStore(tmp_path)
    for bad in ("../x.tar.gz", "a/b.tar.gz", ".hidden.tar.gz", ""):
        with pytest.raises(AffineurError):
            store.path(bad)


def test_sha256_file_streams_big_files(tmp_path: Path) -> None:
    data = os.urandom((1 << 20) * 2 + 17)
    path = tmp_path / "big"
    path.write_bytes(data)
    assert sha256_file(path) == sha(data)


@pytest.mark.parametrize("name", ["demo-1.0.tar.gz", "demo-1.0.tar.bz2", "demo-1.0.zip"])
def test_a_scan_of_the_bytes_finds_every_member_name(tmp_path: Path, name: str) -> None:
    from affineur.pep517._unpack import archive_mentions

    deep = "demo-1.0/" + "/".join(["a-rather-long-folder-name"] * 12) + "/Cargo.lock"
    with_lock, without = tmp_path / "with", tmp_path / "without"
    for folder, members in ((with_lock, [deep]), (without, ["demo-1.0/src/lib.rs"])):
        folder.mkdir()
        if name.endswith(".zip"):
            make_zip(folder / name, {m: (b"[[package]]\n", 0o644) for m in members})
        else:
            make_tar(folder / name, [tar_entry(m, b"[[package]]\n") for m in members])
    # A name past tar's 100-byte field goes into an extension header: still found.
    assert len(deep) > 255
    assert archive_mentions(with_lock / name, b"Cargo.lock")
    assert not archive_mentions(without / name, b"Cargo.lock")
