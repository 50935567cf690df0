"""Wheel edits: the build record and the build number, validated by pypa/installer."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from installer.sources import WheelFile

from affineur.build import add_build_record, finish_wheel, set_build_number
from affineur.errors import AffineurError
from affineur.index import read_metadata, record_hash, requires_dist

DATE = (2020, 1, 2, 3, 4, 6)


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    files: Mapping[str, bytes] | None = None,
    requires: tuple[str, ...] = (),
    scripts: Mapping[str, str] | None = None,
) -> Path:
    """A valid pure wheel, written the way a backend would (RECORD last)."""
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {req}\n" for req in requires)
    members: dict[str, bytes] = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n".encode(),
        **(files or {}),
        f"{dist_info}/METADATA": metadata.encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    if scripts:
        lines = "".join(f"{k} = {v}\n" for k, v in scripts.items())
        members[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\n{lines}".encode()
    record = "".join(f"{p},{record_hash(d)},{len(d)}\n" for p, d in members.items())
    record += f"{dist_info}/RECORD,,\n"
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in [*members.items(), (f"{dist_info}/RECORD", record.encode())]:
            info = zipfile.ZipInfo(member, date_time=DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return path


def validate(wheel: Path) -> None:
    with WheelFile.open(wheel) as source:
        source.validate_record(validate_contents=True)


def contents(wheel: Path) -> list[tuple[str, bytes, tuple[int, ...], int]]:
    with zipfile.ZipFile(wheel) as archive:
        return [
            (i.filename, archive.read(i), i.date_time, i.external_attr) for i in archive.infolist()
        ]


def test_metadata_and_requires_dist(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0", requires=("idna>=2", 'six; extra == "x"'))
    assert read_metadata(wheel)["Name"] == "demo"
    assert requires_dist(wheel) == ["idna>=2", 'six; extra == "x"']


def test_vendored_dist_info_does_not_confuse_the_lookup(tmp_path: Path) -> None:
    wheel = make_wheel(
        tmp_path, "demo", "1.0", files={"other-2.0.dist-info/METADATA": b"Name: other\n"}
    )
    assert read_metadata(wheel)["Name"] == "demo"


def test_not_a_zip_is_a_located_error(tmp_path: Path) -> None:
    bad = tmp_path / "demo-1.0-py3-none-any.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(AffineurError) as info:
        read_metadata(bad)
    assert info.value.file == str(bad)


def test_build_record_is_added_and_the_wheel_stays_valid(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0", files={"demo/data.bin": bytes(range(256))})
    before = {name: data for name, data, _, _ in contents(wheel)}
    add_build_record(wheel, {"z": 1, "a": {"y": [1, 2], "b": "é"}}, source_date_epoch=1700000000)
    validate(wheel)
    after = contents(wheel)
    names = [entry[0] for entry in after]
    # Sorted, the .dist-info directory last and RECORD last of all.
    assert names == [
        "demo/__init__.py",
        "demo/data.bin",
        "demo-1.0.dist-info/METADATA",
        "demo-1.0.dist-info/WHEEL",
        "demo-1.0.dist-info/affineur/build.json",
        "demo-1.0.dist-info/RECORD",
    ]
    # Content is untouched; every date is the epoch and every mode 0644.
    for name, data, date, attr in after:
        if name not in ("demo-1.0.dist-info/RECORD", "demo-1.0.dist-info/affineur/build.json"):
            assert data == before[name]
        assert date == (2023, 11, 14, 22, 13, 20)
        assert attr >> 16 == 0o100644
    assert dict((n, d) for n, d, _, _ in after)["demo-1.0.dist-info/affineur/build.json"] == (
        '{"a":{"b":"é","y":[1,2]},"z":1}'.encode()
    )
    assert not list(tmp_path.glob(".*.tmp"))


def _shuffled_wheel(directory: Path, *, reverse: bool, mode: int, date: tuple[int, ...]) -> Path:
    """The same members as make_wheel's, in another order, with other dates and modes."""
    directory.mkdir()
    plain = make_wheel(directory, "demo", "1.0", files={"demo/tool.sh": b"#!/bin/sh\n"})
    with zipfile.ZipFile(plain) as archive:
        members = [(i.filename, archive.read(i)) for i in archive.infolist()]
    record = next(m for m in members if m[0].endswith("RECORD"))
    rows = record[1].decode().splitlines()
    body = [m for m in members if m is not record]
    if reverse:
        body.reverse()
        rows = [*reversed(rows[:-1]), rows[-1]]
    shuffled = directory / "shuffled" / plain.name
    shuffled.parent.mkdir()
    with zipfile.ZipFile(shuffled, "w", zipfile.ZIP_STORED) as archive:
        for name, data in [*body, (record[0], ("\n".join(rows) + "\n").encode())]:
            info = zipfile.ZipInfo(name, date_time=date)  # type: ignore[arg-type]
            executable = 0o111 if name.endswith(".sh") else 0
            info.external_attr = (0o100000 | mode | executable) << 16
            archive.writestr(info, data)
    return shuffled


def test_normalizing_removes_order_dates_modes_and_record_order(tmp_path: Path) -> None:
    # What differs between two builds of one source by pure-Python backends: the
    # order files were listed in, their mtimes, the umask, RECORD's row order.
    one = _shuffled_wheel(tmp_path / "one", reverse=False, mode=0o644, date=(2001, 9, 9, 1, 46, 40))
    two = _shuffled_wheel(tmp_path / "two", reverse=True, mode=0o600, date=(2024, 5, 1, 0, 0, 0))
    assert one.read_bytes() != two.read_bytes()
    for wheel in (one, two):
        finish_wheel(wheel, {"affineur/build.json": b"{}"}, source_date_epoch=1700000000)
        validate(wheel)
    assert one.read_bytes() == two.read_bytes()
    modes = {name: attr >> 16 for name, _, _, attr in contents(one)}
    assert modes["demo/tool.sh"] == 0o100755
    assert modes["demo/__init__.py"] == 0o100644


def test_build_record_twice_replaces_it(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0")
    add_build_record(wheel, {"n": 1})
    add_build_record(wheel, {"n": 2})
    validate(wheel)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = archive.read("demo-1.0.dist-info/RECORD").decode()
        assert archive.read("demo-1.0.dist-info/affineur/build.json") == b'{"n":2}'
    assert names.count("demo-1.0.dist-info/affineur/build.json") == 1
    assert record.count("affineur/build.json") == 1


def test_build_record_without_epoch_takes_the_wheels_own_dates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    wheel = make_wheel(tmp_path, "demo", "1.0")
    add_build_record(wheel, {"k": "v"})
    first = wheel.read_bytes()
    assert (
        dict((n, d) for n, _, d, _ in contents(wheel))["demo-1.0.dist-info/affineur/build.json"]
        == DATE
    )
    # Same input, same bytes: the rewrite itself is reproducible.
    (tmp_path / "again").mkdir()
    again = make_wheel(tmp_path / "again", "demo", "1.0")
    add_build_record(again, {"k": "v"})
    assert again.read_bytes() == first


def test_set_build_number_renames_and_updates_wheel_and_record(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0")
    add_build_record(wheel, {"k": 1})
    numbered = set_build_number(wheel, 3)
    assert numbered.name == "demo-1.0-3-py3-none-any.whl"
    assert not wheel.exists()
    validate(numbered)
    with zipfile.ZipFile(numbered) as archive:
        lines = archive.read("demo-1.0.dist-info/WHEEL").decode().splitlines()
    assert lines == [
        "Wheel-Version: 1.0",
        "Generator: test",
        "Root-Is-Purelib: true",
        "Tag: py3-none-any",
        "Build: 3",
    ]
    renumbered = set_build_number(numbered, 4)
    assert renumbered.name == "demo-1.0-4-py3-none-any.whl"
    with zipfile.ZipFile(renumbered) as archive:
        wheel_file = archive.read("demo-1.0.dist-info/WHEEL").decode()
        assert json.loads(archive.read("demo-1.0.dist-info/affineur/build.json")) == {"k": 1}
    assert wheel_file.count("Build:") == 1 and "Build: 4\n" in wheel_file
    validate(renumbered)


@pytest.mark.parametrize("build", [-1, True, "2"])
def test_set_build_number_rejects_non_numbers(tmp_path: Path, build: object) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0")
    with pytest.raises(AffineurError):
        set_build_number(wheel, build)  # type: ignore[arg-type]
    assert wheel.exists()
