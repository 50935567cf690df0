"""The one rewrite affineur makes to every wheel it builds.

A backend's wheel is rewritten once: our members are added to its
``.dist-info`` (the build record, the SBOM), the build number is set, and the
archive is normalized so that it depends on nothing but its contents:

* members in one order: sorted by name, the ``.dist-info`` directory last and
  RECORD last of all (PEP 427 recommends both);
* every date set to SOURCE_DATE_EPOCH (a backend may clamp only newer dates,
  keeping older mtimes of the unpacked sdist, or take none at all);
* permissions reduced to 0644, or 0755 for anything executable (the umask of
  the build and of the unpacking leaks into the modes otherwise);
* one compression method and level, no extra fields;
* RECORD rows sorted (backends write them in file-system order).

Content is never changed, so the result installs exactly as the backend's
wheel would. RECORD is updated with the new members' hashes, and the result
replaces the original atomically: a crash never leaves a half-written wheel.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from affineur.atomic import atomic_output
from affineur.errors import AffineurError
from affineur.index import dist_info_dir, open_wheel, record_hash
from affineur.pep517 import SOURCE_DATE_EPOCH_FLOOR

__all__ = [
    "BUILD_RECORD",
    "add_build_record",
    "canonical_json",
    "finish_wheel",
    "set_build_number",
]

# Inside the .dist-info directory: a subdirectory of our own, which PEP 427
# leaves to tools, so no other tool's file can collide with it.
BUILD_RECORD = "affineur/build.json"

_FILE_MODE = stat.S_IFREG | 0o644
_EXEC_MODE = stat.S_IFREG | 0o755
_DIR_MODE = stat.S_IFDIR | 0o755
_MSDOS_DIRECTORY = 0x10
_UNIX = 3


def canonical_json(data: Any) -> bytes:
    """Sorted keys, fixed separators: the same data always gives the same bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _rewrite_record(record: bytes, record_path: str, changes: Mapping[str, bytes]) -> bytes:
    """RECORD with the rows of ``changes`` replaced or added, sorted, its own row last."""
    rows: dict[str, list[str]] = {}
    for row in csv.reader(io.StringIO(record.decode("utf-8"))):
        if row and row[0] != record_path:
            rows[row[0]] = row
    for path, data in changes.items():
        rows[path] = [path, record_hash(data), str(len(data))]
    out = [rows[path] for path in sorted(rows)]
    out.append([record_path, "", ""])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(out)
    return buffer.getvalue().encode("utf-8")


def _epoch(epoch: int | None, infos: list[zipfile.ZipInfo]) -> int:
    """The date every member gets: ``epoch``, SOURCE_DATE_EPOCH, else the newest member's.

    The last resort is still a function of the archive alone, so the rewrite
    stays deterministic even when nobody says what time it is.
    """
    if epoch is None:
        value = os.environ.get("SOURCE_DATE_EPOCH", "")
        if value.isdigit():
            epoch = int(value)
    if epoch is None:
        dates = [int(time.mktime((*i.date_time, 0, 0, -1))) for i in infos]
        epoch = max(dates, default=SOURCE_DATE_EPOCH_FLOOR)
    return max(epoch, SOURCE_DATE_EPOCH_FLOOR)


def _normalized(name: str, like: zipfile.ZipInfo | None, date: tuple[int, ...]) -> zipfile.ZipInfo:
    """A fresh entry for ``name``: fixed date, mode, method and system.

    Fresh, not ``like`` itself: a ZipInfo read from one archive holds offsets
    and extra fields (zip64, extended timestamps) that are wrong in another.
    """
    info = zipfile.ZipInfo(name, date_time=date)  # type: ignore[arg-type]
    info.create_system = _UNIX
    if name.endswith("/"):
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = (_DIR_MODE << 16) | _MSDOS_DIRECTORY
        return info
    info.compress_type = zipfile.ZIP_DEFLATED
    mode = (like.external_attr >> 16) if like is not None else 0
    info.external_attr = (_EXEC_MODE if mode & 0o111 else _FILE_MODE) << 16
    return info


def _order(dist_info: str, record_path: str) -> Any:
    def key(name: str) -> tuple[bool, bool, str]:
        return (name.startswith(f"{dist_info}/"), name == record_path, name)

    return key


def _rewrite(
    wheel: Path,
    destination: Path,
    changes: Mapping[str, bytes],
    epoch: int | None = None,
) -> None:
    """Copy ``wheel`` to ``destination``, ``changes`` (member -> content) applied, normalized."""
    with open_wheel(wheel) as source:
        record_path = f"{dist_info_dir(source, wheel)}/RECORD"
        infos = source.infolist()
        try:
            record_info = source.getinfo(record_path)
        except KeyError as exc:
            raise AffineurError(f"{wheel.name} has no RECORD", file=str(wheel)) from exc
        record = _rewrite_record(source.read(record_info), record_path, changes)
        existing = {info.filename: info for info in infos}
        if len(existing) != len(infos):
            raise AffineurError(f"{wheel.name} holds a member twice", file=str(wheel))
        date = time.gmtime(_epoch(epoch, infos))[:6]
        names = sorted(
            {*existing, *changes, record_path}, key=_order(record_path.split("/")[0], record_path)
        )
        with atomic_output(destination) as raw, zipfile.ZipFile(raw, "w") as target:
            for name in names:
                info = _normalized(name, existing.get(name), date)
                if name == record_path:
                    data = record
                elif name in changes:
                    data = changes[name]
                else:
                    data = source.read(existing[name])
                target.writestr(info, data, compresslevel=6)


def _with_build_field(wheel_metadata: bytes, build: int) -> bytes:
    """WHEEL with its ``Build:`` header set (or removed for 0), other lines untouched."""
    lines = wheel_metadata.decode("utf-8").splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    kept = [line for line in lines if not line.lower().startswith("build:")]
    if not build:
        return "".join(kept).encode("utf-8")
    field = f"Build: {build}{newline}"
    if kept and not kept[-1].endswith(("\n", "\r")):
        kept[-1] += newline
    # Headers end at the first blank line (WHEEL rarely has a body, but may).
    end = next((i for i, line in enumerate(kept) if not line.strip()), len(kept))
    kept.insert(end, field)
    return "".join(kept).encode("utf-8")


def _check_build_number(build: object) -> int:
    if isinstance(build, bool) or not isinstance(build, int) or build < 0:
        raise AffineurError(f"a build number must be a non-negative integer, not {build!r}")
    return build


def _numbered_name(wheel: Path, build: int) -> Path:
    parts = wheel.name.removesuffix(".whl").split("-")
    if len(parts) not in (5, 6) or not wheel.name.endswith(".whl"):
        raise AffineurError(f"not a wheel file name: {wheel.name}", file=str(wheel))
    name, version, *_, python, abi, platform = parts
    tag = f"-{build}" if build else ""
    return wheel.with_name(f"{name}-{version}{tag}-{python}-{abi}-{platform}.whl")


def finish_wheel(
    wheel: Path,
    members: Mapping[str, bytes],
    *,
    build_number: int | None = None,
    source_date_epoch: int | None = None,
) -> Path:
    """The one rewrite of a built wheel; returns its (possibly renamed) path.

    ``members`` are paths inside the ``.dist-info`` directory and their bytes.
    ``build_number`` None leaves the build tag alone; an integer sets it (0
    removes it). Installers prefer the highest build tag among wheels of one
    version, so a changelog entry makes the rebuilt wheel win over an earlier one.
    """
    with open_wheel(wheel) as archive:
        dist_info = dist_info_dir(archive, wheel)
        changes = {f"{dist_info}/{name}": data for name, data in members.items()}
        target = wheel
        if build_number is not None:
            build = _check_build_number(build_number)
            target = _numbered_name(wheel, build)
            member = f"{dist_info}/WHEEL"
            try:
                current = archive.read(member)
            except KeyError as exc:
                raise AffineurError(f"{wheel.name} has no WHEEL file", file=str(wheel)) from exc
            changes[member] = _with_build_field(current, build)
    _rewrite(wheel, target, changes, epoch=source_date_epoch)
    if target != wheel:
        wheel.unlink()
    return target


def add_build_record(
    wheel: Path, record: Mapping[str, Any], *, source_date_epoch: int | None = None
) -> None:
    """Store ``record`` as canonical JSON in the wheel's ``.dist-info/affineur/build.json``."""
    finish_wheel(wheel, {BUILD_RECORD: canonical_json(record)}, source_date_epoch=source_date_epoch)


def set_build_number(wheel: Path, build: int) -> Path:
    """Give ``wheel`` the build tag ``build``: file name, WHEEL and RECORD.

    Returns the new path; the old file is gone.
    """
    _check_build_number(build)
    _numbered_name(wheel, build)
    return finish_wheel(wheel, {}, build_number=build)
