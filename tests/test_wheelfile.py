"""Wheel edits: the build record and the build number, validated by pypa/installer."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from installer.sources import WheelFile

from affineur.build import add_build_record, set_build_number
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
    before = contents(wheel)
    add_build_record(wheel, {"z": 1, "a": {"y": [1, 2], "b": "é"}}, source_date_epoch=1700000000)
    validate(wheel)
    after = contents(wheel)
    names = [entry[0] for entry in after]
    assert names == [
        *[entry[0] for entry in before[:-1]],
        "demo-1.0.dist-info/affineur/build.json",
        "demo-1.0.dist-info/RECORD",
    ]
    # Every member but RECORD is unchanged: bytes, date and permissions.
    assert after[:-2] == before[:-1]
    record_entry = after[-2]
    assert record_entry[1] == '{"a":{"b":"é","y":[1,2]},"z":1}'.encode()
    assert record_entry[2] == (2023, 11, 14, 22, 13, 20)
    assert not list(tmp_path.glob(".*.tmp"))


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
