"""The two edits affineur makes to wheels.

Both edits (the build record, the build number) rewrite the archive: every
other member keeps its content, name, date, permissions and position, RECORD is
updated with the new hashes, and the result replaces the original atomically,
so a crash never leaves a half-written wheel in the cache.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from affineur.atomic import atomic_output
from affineur.errors import AffineurError
from affineur.index import dist_info_dir, open_wheel, record_hash
from affineur.pep517 import SOURCE_DATE_EPOCH_FLOOR

__all__ = ["BUILD_RECORD", "add_build_record", "set_build_number"]

# Inside the .dist-info directory: a subdirectory of our own, which PEP 427
# leaves to tools, so no other tool's file can collide with it.
BUILD_RECORD = "affineur/build.json"


def _rewrite_record(record: bytes, record_path: str, changes: Mapping[str, bytes]) -> bytes:
    """RECORD with the rows of ``changes`` replaced (or added before RECORD's own row)."""
    rows = list(csv.reader(io.StringIO(record.decode("utf-8"))))
    pending = dict(changes)
    out: list[list[str]] = []
    for row in rows:
        if not row:
            continue
        path = row[0]
        if path == record_path:
            out.extend([p, record_hash(d), str(len(d))] for p, d in pending.items())
            pending.clear()
            out.append(row)
        elif path in changes:
            if path in pending:
                data = pending.pop(path)
                out.append([path, record_hash(data), str(len(data))])
        else:
            out.append(row)
    out.extend([p, record_hash(d), str(len(d))] for p, d in pending.items())
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(out)
    return buffer.getvalue().encode("utf-8")


def _zip_date(epoch: int | None) -> tuple[int, int, int, int, int, int] | None:
    """The zip date of members we add, from ``epoch`` or SOURCE_DATE_EPOCH.

    None when neither is known: the caller then copies an existing member's
    date, which the backend already derived from SOURCE_DATE_EPOCH.
    """
    if epoch is None:
        value = os.environ.get("SOURCE_DATE_EPOCH", "")
        if not value.isdigit():
            return None
        epoch = int(value)
    return time.gmtime(max(epoch, SOURCE_DATE_EPOCH_FLOOR))[:6]


def _member(name: str, like: zipfile.ZipInfo) -> zipfile.ZipInfo:
    """A fresh entry carrying over ``like``'s metadata.

    Fresh, not ``like`` itself: a ZipInfo read from one archive holds offsets
    and extra fields (zip64) that are wrong in another.
    """
    info = zipfile.ZipInfo(name, date_time=like.date_time)
    info.compress_type = like.compress_type
    info.external_attr = like.external_attr
    info.create_system = like.create_system
    return info


def _rewrite(
    wheel: Path,
    destination: Path,
    changes: Mapping[str, bytes],
    epoch: int | None = None,
) -> None:
    """Copy ``wheel`` to ``destination`` with ``changes`` (member -> content) applied.

    Changed members stay where they were; new ones go just before RECORD, which
    is rewritten with their hashes.
    """
    with open_wheel(wheel) as source:
        record_path = f"{dist_info_dir(source, wheel)}/RECORD"
        infos = source.infolist()
        try:
            record_info = source.getinfo(record_path)
        except KeyError as exc:
            raise AffineurError(f"{wheel.name} has no RECORD", file=str(wheel)) from exc
        record = _rewrite_record(source.read(record_info), record_path, changes)
        existing = {info.filename for info in infos}
        added = {name: data for name, data in changes.items() if name not in existing}
        date = _zip_date(epoch) or record_info.date_time
        with atomic_output(destination) as raw, zipfile.ZipFile(raw, "w") as target:
            for info in infos:
                if info.filename == record_path:
                    for name, data in added.items():
                        new = zipfile.ZipInfo(name, date_time=date)
                        new.compress_type = zipfile.ZIP_DEFLATED
                        new.external_attr = 0o644 << 16
                        target.writestr(new, data)
                    target.writestr(_member(record_path, info), record)
                elif info.filename in changes:
                    target.writestr(_member(info.filename, info), changes[info.filename])
                else:
                    target.writestr(_member(info.filename, info), source.read(info))


def add_build_record(
    wheel: Path, record: Mapping[str, Any], *, source_date_epoch: int | None = None
) -> None:
    """Store ``record`` as canonical JSON in the wheel's ``.dist-info/affineur/build.json``.

    Canonical (sorted keys, fixed separators) so the same inputs give the same
    bytes, and a rebuild can be compared with the original wheel byte for byte.
    """
    data = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    with open_wheel(wheel) as archive:
        dist_info = dist_info_dir(archive, wheel)
    _rewrite(
        wheel,
        wheel,
        {f"{dist_info}/{BUILD_RECORD}": data.encode("utf-8")},
        epoch=source_date_epoch,
    )


def _with_build_field(wheel_metadata: bytes, build: int) -> bytes:
    """WHEEL with its ``Build:`` header set, other lines untouched."""
    lines = wheel_metadata.decode("utf-8").splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    field = f"Build: {build}{newline}"
    kept = [line for line in lines if not line.lower().startswith("build:")]
    if kept and not kept[-1].endswith(("\n", "\r")):
        kept[-1] += newline
    # Headers end at the first blank line (WHEEL rarely has a body, but may).
    end = next((i for i, line in enumerate(kept) if not line.strip()), len(kept))
    kept.insert(end, field)
    return "".join(kept).encode("utf-8")


def set_build_number(wheel: Path, build: int) -> Path:
    """Give ``wheel`` the build tag ``build``: file name, WHEEL and RECORD.

    Returns the new path; the old file is gone. Installers prefer the highest
    build tag among wheels of one version, so a changelog entry makes the
    rebuilt wheel win over an earlier one of the same version.
    """
    if isinstance(build, bool) or not isinstance(build, int) or build < 0:
        raise AffineurError(f"a build number must be a non-negative integer, not {build!r}")
    parts = wheel.name.removesuffix(".whl").split("-")
    if len(parts) not in (5, 6) or not wheel.name.endswith(".whl"):
        raise AffineurError(f"not a wheel file name: {wheel.name}", file=str(wheel))
    name, version, *_, python, abi, platform = parts
    target = wheel.with_name(f"{name}-{version}-{build}-{python}-{abi}-{platform}.whl")
    with open_wheel(wheel) as archive:
        member = f"{dist_info_dir(archive, wheel)}/WHEEL"
        try:
            current = archive.read(member)
        except KeyError as exc:
            raise AffineurError(f"{wheel.name} has no WHEEL file", file=str(wheel)) from exc
    _rewrite(wheel, target, {member: _with_build_field(current, build)})
    if target != wheel:
        wheel.unlink()
    return target
