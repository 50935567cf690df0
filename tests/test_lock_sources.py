"""The locker's sdist sources: what an sdist's archive is asked is asked once."""

from __future__ import annotations

import io
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from affineur.lock import _sources
from affineur.lock._sources import NetworkIndex


def _sdist(path: Path, pkg_info: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("demo-1.0/PKG-INFO")
        info.size = len(pkg_info)
        tar.addfile(info, io.BytesIO(pkg_info))
    return path


@pytest.mark.parametrize("kept", [True, False])
def test_pkg_info_is_read_from_the_archive_once_however_many_ask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kept: bool
) -> None:
    archive = _sdist(tmp_path / "demo-1.0.tar.gz", b"Metadata-Version: 2.2\nName: demo\n")
    reads: list[Path] = []
    started = threading.Barrier(4)
    real = _sources.read_pkg_info

    def counted(sdist: Path) -> bytes | None:
        reads.append(sdist)
        return real(sdist)

    monkeypatch.setattr(_sources, "read_pkg_info", counted)
    none: Any = None
    index = NetworkIndex(none, none, none, none, pkg_info=tmp_path / "kept" if kept else None)
    answers: list[bytes | None] = []

    def ask() -> None:
        started.wait()
        answers.append(index._pkg_info(archive, "ab" * 32))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers.append(index._pkg_info(archive, "ab" * 32))
    assert answers == [b"Metadata-Version: 2.2\nName: demo\n"] * 5
    assert reads == [archive]
