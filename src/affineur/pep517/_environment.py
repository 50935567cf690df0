"""Build environments made cheaply, and shared.

:class:`EnvironmentStore` makes the venvs of :mod:`._venv` cheaply: each wheel
is unpacked (and its bytecode compiled) once, into a store keyed by its hash; an
environment is a venv whose files are hard links into that store, made once per
distinct set of wheels and then shared, read-only, by every build that needs that
set. Files and compiled bytecode are also kept by content: an upstream wheel
unpacked to discover build requirements and the wheel built from the same release
later hold the same sources, which are then written and compiled once, and linked
the second time.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import py_compile
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.parser import BytesParser
from pathlib import Path
from typing import BinaryIO

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.records import Hash, RecordEntry, parse_record_file
from installer.scripts import Script
from installer.sources import WheelFile
from installer.utils import Scheme, fix_shebang, get_launcher_kind
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from affineur.errors import AffineurError
from affineur.pep517._venv import BuildEnvironment, is_running_interpreter

__all__ = ["EnvironmentStore"]


def _compile_beside(site: Path, files: _Files | None = None) -> None:
    """Unchecked-hash bytecode for every module under ``site``, in its ``__pycache__``.

    Not compileall: it follows ``sys.pycache_prefix``, which would put the
    bytecode outside the environment. With ``files``, a module whose source was
    compiled before (in another wheel) gets a link to that bytecode: an
    unchecked-hash pyc depends only on the source, and Python fixes the file name
    its code objects carry when it loads them.
    """
    tag = sys.implementation.cache_tag
    for source in sorted(site.rglob("*.py")):
        cfile = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        kept = None
        if files is not None:
            with contextlib.suppress(OSError):
                kept = files.bytecode(source.read_bytes(), tag)
                if files.link(kept, cfile):
                    continue
        with contextlib.suppress(py_compile.PyCompileError, OSError, ValueError):
            py_compile.compile(
                str(source),
                cfile=str(cfile),
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
            if files is not None and kept is not None:
                files.keep(cfile, kept)


# --- the store of unpacked wheels and shared environments ------------------------------

_COMPLETE = ".affineur-complete"
_WHEEL_INFO = ".affineur-wheel.json"
STORE_FORMAT = 1


class _Files:
    """Files by content under ``root``, so that equal files are made once and linked.

    ``content/<sha256>[x]`` holds a file of a wheel (``x``: executable), keyed by the
    hash its RECORD gives (checked before a byte is unpacked); ``bytecode/<tag>/
    <sha256>.pyc`` the bytecode of a source with that hash. Each is a hard link to
    the first file written with that content, so it is read-only like every file
    of the store. Creating a file costs far more than linking one on the file
    systems builds run on, and compiling costs more still.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def content(self, digest: str, executable: bool) -> Path:
        return self.root / "content" / digest[:2] / (digest + ("x" if executable else ""))

    def bytecode(self, source: bytes, tag: str) -> Path:
        digest = hashlib.sha256(source).hexdigest()
        return self.root / "bytecode" / tag / digest[:2] / f"{digest}.pyc"

    @staticmethod
    def link(kept: Path, target: Path) -> bool:
        """Link ``target`` to ``kept``; False when nothing is kept, or it cannot be linked
        (another file system, or too many links). An existing ``target`` is an error."""
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(kept, target)
        except FileExistsError:
            raise
        except OSError:
            return False
        return True

    @staticmethod
    def keep(made: Path, kept: Path) -> None:
        """Remember ``made`` as ``kept`` (another thread may have kept it first)."""
        with contextlib.suppress(OSError):
            kept.parent.mkdir(parents=True, exist_ok=True)
            os.link(made, kept)


@dataclass
class _UnpackDestination(SchemeDictionaryDestination):
    """Unpacks a wheel as into a venv, except what depends on the venv's own path.

    Console scripts and ``#!python`` scripts name their interpreter, so they are
    recorded here and made by each environment for its own.
    """

    entry_points: list[tuple[str, str, str, str]] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    files: _Files | None = None
    # The hex sha256 of each file of the wheel's root (purelib or platlib) by
    # its path there, from the RECORD that was validated before unpacking.
    digests: dict[str, str] = field(default_factory=dict)
    root_scheme: str = "purelib"

    def write_script(self, name: str, module: str, attr: str, section: str) -> RecordEntry:
        self.entry_points.append((name, module, attr, section))
        return RecordEntry(name, None, None)

    def write_file(
        self, scheme: Scheme, path: str | os.PathLike[str], stream: BinaryIO, is_executable: bool
    ) -> RecordEntry:
        if scheme == "scripts":
            self.scripts.append(os.fspath(path))
            return self.write_to_fs(scheme, os.fspath(path), stream, is_executable)
        digest = self.digests.get(os.fspath(path)) if scheme == self.root_scheme else None
        if self.files is None or digest is None:
            return super().write_file(scheme, path, stream, is_executable)
        kept = self.files.content(digest, is_executable)
        target = self._path_with_destdir(scheme, os.fspath(path))
        if self.files.link(kept, target):
            size = kept.stat().st_size
            encoded = base64.urlsafe_b64encode(bytes.fromhex(digest)).decode().rstrip("=")
            return RecordEntry(os.fspath(path), Hash(self.hash_algorithm, encoded), size)
        entry = super().write_file(scheme, path, stream, is_executable)
        self.files.keep(target, kept)
        return entry


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold ``lock`` against other threads and processes (flock is per open file)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class EnvironmentStore:
    """Build environments under ``root``, one per distinct set of wheels, shared read-only.

    ``root/unpacked/<key>/`` holds one wheel unpacked in a venv's layout with its
    bytecode compiled (unchecked-hash pycs: the files never change, so Python
    never re-reads a source to validate them); ``root/envs/<key>/`` is a venv
    whose files are hard links to those (copies across file systems). Making an
    environment then costs a directory walk instead of decompressing, hashing,
    writing and compiling every wheel again; reusing one costs nothing.

    An environment is complete once its marker exists, and is never changed
    afterwards: builds must treat it as read-only (the sandbox mounts it so), as
    every later build with the same wheels uses it. Unpacked files are made
    read-only too, since a hard link shares them with every environment.
    """

    def __init__(
        self, root: Path, *, python: str = sys.executable, files: Path | None = None
    ) -> None:
        """``files`` (default ``root/files``) keeps files and bytecode by content; stores
        that share it (discovery's and the builds') share that work too."""
        self.root = root
        self.python = python
        self.files = _Files(files or root / "files")
        self._digests: dict[tuple[str, int, int], str] = {}
        self._digests_lock = threading.Lock()

    def environment(self, wheels: Sequence[Path], python: str | None = None) -> BuildEnvironment:
        """A complete environment holding exactly ``wheels`` (made now if there is none),
        made from ``python`` (default: the store's): environments of two interpreters
        with the same wheels are two environments."""
        python = python or self.python
        names = _distinct_names(wheels)
        digests = [self._digest(w) for w in wheels]
        key = _digest_json(
            {
                "format": STORE_FORMAT,
                "python": str(Path(python).resolve()),
                "wheels": sorted(digests),
            }
        )
        path = self.root / "envs" / key[:32]
        if (path / _COMPLETE).exists():
            return BuildEnvironment.open(path)
        with _exclusive(self.root / "envs" / f"{key[:32]}.lock"):
            if (path / _COMPLETE).exists():
                return BuildEnvironment.open(path)
            # Made in place, not renamed into place: scripts name the venv's
            # interpreter by its path. A leftover is a killed run's.
            if path.exists():
                shutil.rmtree(path)
            env = BuildEnvironment.create(path, python=python)
            for wheel, digest, name in zip(wheels, digests, names, strict=True):
                self._link(self._unpacked(wheel, digest, name, env, python), env, wheel)
            (path / _COMPLETE).write_text(
                json.dumps(sorted(w.name for w in wheels), indent=0) + "\n"
            )
        return env

    def _digest(self, wheel: Path) -> str:
        stat = wheel.stat()
        key = (str(wheel), stat.st_size, stat.st_mtime_ns)
        with self._digests_lock:
            known = self._digests.get(key)
        if known is None:
            with wheel.open("rb") as stream:
                known = hashlib.file_digest(stream, "sha256").hexdigest()
            with self._digests_lock:
                self._digests[key] = known
        return known

    def _unpacked(
        self, wheel: Path, digest: str, name: str, env: BuildEnvironment, python: str
    ) -> Path:
        """The wheel unpacked in ``env``'s layout, compiled for its interpreter."""
        layout = env.scheme(name, Path("/"))
        # The layout names the Python series (lib/python3.12/...), and so the
        # bytecode's magic number: one series' environments share an unpacked wheel.
        key = _digest_json({"format": STORE_FORMAT, "wheel": digest, "layout": layout})
        target = self.root / "unpacked" / f"{name}-{key[:24]}"
        if (target / _COMPLETE).exists():
            return target
        with _exclusive(target.with_name(target.name + ".lock")):
            if (target / _COMPLETE).exists():
                return target
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            destination = _UnpackDestination(
                env.scheme(name, target),
                interpreter="python",
                script_kind=get_launcher_kind(),
                files=self.files,
            )
            try:
                with WheelFile.open(wheel) as source:
                    # Our own wheels come from the cache; a truncated or edited one
                    # must fail here, not as a mysterious import error in a backend.
                    source.validate_record()
                    destination.digests = _record_digests(source)
                    destination.root_scheme = _root_scheme(source)
                    install(source, destination, additional_metadata={"INSTALLER": b"affineur\n"})
            except AffineurError:
                raise
            except Exception as exc:  # installer raises plain ValueError subclasses
                shutil.rmtree(target, ignore_errors=True)
                raise AffineurError(
                    f"cannot install {wheel.name}: {exc}", stage="build-env", file=str(wheel)
                ) from exc
            self._compile(target, env, python)
            (target / _WHEEL_INFO).write_text(
                json.dumps(
                    {"entry_points": destination.entry_points, "scripts": destination.scripts}
                )
            )
            _read_only(target)
            (target / _COMPLETE).touch()
        return target

    def _compile(self, target: Path, env: BuildEnvironment, python: str) -> None:
        # A module that does not compile (a Python 2 leftover in a wheel) is no
        # reason to fail: it fails only if something imports it, as it would anyway.
        # The bytecode goes beside the sources whatever PYTHONPYCACHEPREFIX says:
        # hooks run without that variable, so that is where they look for it.
        layout = env.scheme("-", target)
        for site in sorted({Path(layout["purelib"]), Path(layout["platlib"])}):
            if not site.is_dir():
                continue
            if is_running_interpreter(python):
                _compile_beside(site, self.files)
            else:
                environ = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
                subprocess.run(
                    [str(env.python), "-m", "compileall", "-q", "-q",
                     "--invalidation-mode", "unchecked-hash", str(site)],
                    capture_output=True,
                    env=environ,
                    check=False,
                )  # fmt: skip

    def _link(self, unpacked: Path, env: BuildEnvironment, wheel: Path) -> None:
        info = json.loads((unpacked / _WHEEL_INFO).read_text())
        scripts_dir = Path(env.scheme("-", unpacked)["scripts"])
        raw_scripts = {scripts_dir / p for p in info["scripts"]}
        for dirpath, _, filenames in os.walk(unpacked):
            source_dir = Path(dirpath)
            target_dir = env.path / source_dir.relative_to(unpacked)
            target_dir.mkdir(parents=True, exist_ok=True)
            for filename in filenames:
                source = source_dir / filename
                if source_dir == unpacked and filename.startswith(".affineur-"):
                    continue
                target = target_dir / filename
                try:
                    if source in raw_scripts:
                        _write_script(source, target, str(env.python))
                    else:
                        _link_or_copy(source, target)
                except FileExistsError:
                    raise AffineurError(
                        f"cannot install {wheel.name}: another wheel of the environment "
                        f"has {target.relative_to(env.path)}",
                        stage="build-env",
                        file=str(wheel),
                    ) from None
        for name, module, attr, section in info["entry_points"]:
            script_name, data = Script(name, module, attr, section).generate(
                str(env.python), get_launcher_kind()
            )
            target = env.bin / script_name
            try:
                with target.open("xb") as out:
                    out.write(data)
            except FileExistsError:
                raise AffineurError(
                    f"cannot install {wheel.name}: another wheel of the environment "
                    f"has the script {script_name}",
                    stage="build-env",
                    file=str(wheel),
                ) from None
            target.chmod(0o755)


def _record_digests(source: WheelFile) -> dict[str, str]:
    """Path -> hex sha256 of every file the RECORD of ``source`` hashes with sha256.

    Only called after ``validate_record``, so each hash is the file's own.
    """
    found: dict[str, str] = {}
    for path, hashed, _size in parse_record_file(source.read_dist_info("RECORD").splitlines()):
        algorithm, _, encoded = hashed.partition("=")
        if algorithm == "sha256" and encoded:
            with contextlib.suppress(ValueError):
                raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
                if len(raw) == hashlib.sha256().digest_size:
                    found[path] = raw.hex()
    return found


def _root_scheme(source: WheelFile) -> str:
    """Where the files at the top of the wheel go (its WHEEL file says)."""
    wheel = BytesParser().parsebytes(source.read_dist_info("WHEEL").encode(), headersonly=True)
    return "purelib" if wheel.get("Root-Is-Purelib", "").strip() == "true" else "platlib"


def _distinct_names(wheels: Sequence[Path]) -> list[str]:
    """The project name of each wheel; two wheels of one project are refused."""
    seen: dict[str, Path] = {}
    names: list[str] = []
    for wheel in wheels:
        try:
            name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
        except InvalidWheelFilename as exc:
            raise AffineurError(f"not a wheel file name: {wheel.name}", stage="build-env") from exc
        if name in seen:
            raise AffineurError(
                f"two wheels of {name} for one build environment: "
                f"{seen[name].name} and {wheel.name}",
                stage="build-env",
                package=name,
            )
        seen[name] = wheel
        names.append(name)
    return names


def _digest_json(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        # Another file system, or one without hard links: a copy keeps the mtime,
        # which is all the compiled bytecode checks.
        shutil.copy2(source, target)


def _write_script(source: Path, target: Path, interpreter: str) -> None:
    with source.open("rb") as stream, fix_shebang(stream, interpreter) as fixed:
        data = fixed.read()
    with target.open("xb") as out:
        out.write(data)
    target.chmod(0o755)


def _read_only(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            path = Path(dirpath, filename)
            path.chmod(path.stat().st_mode & ~0o222)
