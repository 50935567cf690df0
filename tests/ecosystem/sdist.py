"""Publishing fake releases: real sdists and "upstream" wheels, built in-process.

The artefacts come from the same backend code the builds under test run, called through
its private functions with an explicit source directory, environment and timestamp, so
publishing needs no subprocess, no chdir, and produces the same bytes every time.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.ecosystem import fakebackend
from tests.ecosystem.projects import FakeProject

FIXED_EPOCH = 1_700_000_000
"""Timestamp of every published artefact, so catalog bytes (and hashes) never change."""


@dataclass(frozen=True)
class BuiltRelease:
    """The published artefacts of one :class:`FakeProject` (``None`` when not published)."""

    project: FakeProject
    sdist: Path | None
    wheel: Path | None


def write_sdist(project: FakeProject, out_dir: Path, *, epoch: int = FIXED_EPOCH) -> Path:
    """Write ``{dist_name}-{version}.tar.gz`` into ``out_dir`` and return its path."""
    with tempfile.TemporaryDirectory(prefix="fake-src-") as tmp:
        source = project.write_source_tree(Path(tmp))
        filename = fakebackend._build_sdist(source, out_dir, epoch)
    return out_dir / filename


def write_wheel(
    project: FakeProject, out_dir: Path, *, epoch: int = FIXED_EPOCH, origin: str = "upstream"
) -> Path:
    """Write the project's "upstream" wheel into ``out_dir`` and return its path.

    ``fail`` is ignored: a package whose build fails may still have an upstream wheel,
    which is what test mode substitutes for it. The wheel records ``origin`` (``built``
    stands for a wheel its own backend built from the sdist, as pip would).
    """
    with tempfile.TemporaryDirectory(prefix="fake-src-") as tmp:
        source = project.write_source_tree(Path(tmp))
        environ = {"SOURCE_DATE_EPOCH": str(epoch)}
        filename = fakebackend._build_wheel(
            source, out_dir, None, environ, honour_fail=False, origin=origin
        )
    return out_dir / filename


def build_release(project: FakeProject, out_dir: Path) -> BuiltRelease:
    """Publish what ``project`` asks for (sdist and/or wheel) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sdist = write_sdist(project, out_dir) if project.publish_sdist else None
    wheel = write_wheel(project, out_dir) if project.publish_wheel else None
    return BuiltRelease(project, sdist, wheel)


def build_catalog(projects: Iterable[FakeProject], out_dir: Path) -> list[BuiltRelease]:
    """Publish every project; file names are unique per release, so one directory holds all."""
    return [build_release(project, out_dir) for project in projects]


def wheel_metadata(wheel: bytes | Path) -> bytes:
    """The ``.dist-info/METADATA`` of a wheel: what the index serves as its PEP 658 file."""
    source: Path | io.BytesIO = wheel if isinstance(wheel, Path) else io.BytesIO(wheel)
    with zipfile.ZipFile(source) as zf:
        names = [
            n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1
        ]
        if len(names) != 1:
            raise ValueError(f"wheel has {len(names)} top-level .dist-info/METADATA files")
        return zf.read(names[0])
