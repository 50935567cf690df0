"""A build environment: a venv holding exactly the wheels it is given.

No pip, no resolver, no index: the lock already decided every wheel, so all that
is left is unpacking them, which pypa/installer does with no network and no
guessing. The venv is created without pip so that nothing a backend runs can
install anything else into it. :mod:`._environment` makes them cheaply, shared.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile
from installer.utils import get_launcher_kind
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from affineur.errors import AffineurError

__all__ = ["BuildEnvironment", "is_running_interpreter"]

# Cached next to the interpreter: asking a Python for its paths costs a process start.
_PATHS_FILE = "affineur-paths.json"

_QUERY = (
    "import json, sys, sysconfig; "
    "p = sysconfig.get_paths(); "
    "print(json.dumps({'purelib': p['purelib'], 'platlib': p['platlib'], "
    "'scripts': p['scripts'], 'data': p['data'], "
    "'python_version': sysconfig.get_python_version()}))"
)


@dataclass(frozen=True)
class BuildEnvironment:
    """A venv at ``path``; ``python`` is its interpreter."""

    path: Path
    python: Path
    bin: Path
    purelib: Path
    platlib: Path
    data: Path
    python_version: str

    @classmethod
    def create(cls, path: Path, *, python: str = sys.executable) -> BuildEnvironment:
        """Create an empty venv at ``path`` (which must not exist or be empty).

        With the running interpreter the venv module runs in-process (a few
        milliseconds); another interpreter has to create its own venv.
        """
        try:
            if is_running_interpreter(python):
                venv.EnvBuilder(symlinks=True, with_pip=False).create(path)
            else:
                subprocess.run(
                    [python, "-m", "venv", "--without-pip", str(path)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
        except subprocess.CalledProcessError as exc:
            raise AffineurError(
                f"cannot create a virtual environment with {python}",
                stage="build-env",
                causes=tuple(exc.stderr.splitlines()[-10:]),
            ) from exc
        except OSError as exc:
            raise AffineurError(
                f"cannot create a virtual environment at {path}: {exc}", stage="build-env"
            ) from exc
        interpreter = path / "bin" / "python"
        paths = _own_venv_paths(path) if is_running_interpreter(python) else None
        if paths is not None:
            (path / _PATHS_FILE).write_text(json.dumps(paths))
            return cls._from_paths(path, paths)
        # Not -S: it is site.py that makes a venv's interpreter see the venv's
        # prefix; without it sysconfig would answer for the base interpreter.
        try:
            done = subprocess.run(
                [str(interpreter), "-I", "-c", _QUERY],
                check=True,
                capture_output=True,
                text=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise AffineurError(
                f"the new virtual environment at {path} does not run", stage="build-env"
            ) from exc
        (path / _PATHS_FILE).write_text(done.stdout)
        return cls._from_paths(path, json.loads(done.stdout))

    @classmethod
    def open(cls, path: Path) -> BuildEnvironment:
        """An environment made earlier by :meth:`create`."""
        try:
            paths = json.loads((path / _PATHS_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise AffineurError(
                f"{path} is not a build environment made by affineur", stage="build-env"
            ) from exc
        return cls._from_paths(path, paths)

    @classmethod
    def _from_paths(cls, path: Path, paths: dict[str, str]) -> BuildEnvironment:
        return cls(
            path=path,
            python=path / "bin" / "python",
            bin=Path(paths["scripts"]),
            purelib=Path(paths["purelib"]),
            platlib=Path(paths["platlib"]),
            data=Path(paths["data"]),
            python_version=paths["python_version"],
        )

    def installed(self) -> dict[str, str]:
        """Canonical project name -> version of every distribution in the venv."""
        found: dict[str, str] = {}
        for site in dict.fromkeys((self.purelib, self.platlib)):
            for metadata in site.glob("*.dist-info/METADATA"):
                with metadata.open("rb") as stream:
                    headers = BytesParser().parse(stream, headersonly=True)
                name, version = headers.get("Name"), headers.get("Version")
                if name and version:
                    found[canonicalize_name(name)] = version
        return found

    def install(self, wheels: Sequence[Path]) -> None:
        """Install ``wheels`` exactly, refusing two versions of one project.

        A duplicate is a bug upstream (the lock gives one version per project
        per environment); installing both would leave whichever unpacked last.
        """
        present = self.installed()
        seen: dict[str, Path] = {}
        for wheel in wheels:
            try:
                name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
            except InvalidWheelFilename as exc:
                raise AffineurError(
                    f"not a wheel file name: {wheel.name}", stage="build-env"
                ) from exc
            if name in seen:
                raise AffineurError(
                    f"two wheels of {name} for one build environment: "
                    f"{seen[name].name} and {wheel.name}",
                    stage="build-env",
                    package=name,
                )
            if name in present:
                raise AffineurError(
                    f"{name} {present[name]} is already installed in {self.path}",
                    stage="build-env",
                    package=name,
                )
            seen[name] = wheel
        for wheel in wheels:
            self._install_one(wheel)

    def scheme(self, name: str, prefix: Path | None = None) -> dict[str, str]:
        """Where each part of a wheel of project ``name`` goes in this venv.

        With ``prefix``, the same layout under another root: what the store
        unpacks into, so that its files link into place unchanged.
        """
        root = self.path if prefix is None else prefix
        scheme = {
            "purelib": self.purelib,
            "platlib": self.platlib,
            "scripts": self.bin,
            "data": self.data,
            # A venv's sysconfig "include" is the base interpreter's, shared by
            # every venv: headers go inside this venv instead, where pip puts them.
            "headers": self.path / "include" / "site" / f"python{self.python_version}" / name,
        }
        return {k: str(root / v.relative_to(self.path)) for k, v in scheme.items()}

    def _install_one(self, wheel: Path) -> None:
        name = parse_wheel_filename(wheel.name)[0]
        destination = SchemeDictionaryDestination(
            self.scheme(name),
            interpreter=str(self.python),
            script_kind=get_launcher_kind(),
            # Compiling bytecode for every build tool costs more than a build
            # saves by it; the interpreter compiles what it imports anyway.
            bytecode_optimization_levels=(),
        )
        try:
            with WheelFile.open(wheel) as source:
                # Our own wheels come from the cache; a truncated or edited one
                # must fail here, not as a mysterious import error in a backend.
                source.validate_record()
                install(source, destination, additional_metadata={"INSTALLER": b"affineur\n"})
        except AffineurError:
            raise
        except Exception as exc:  # installer raises plain ValueError/FileExistsError subclasses
            raise AffineurError(
                f"cannot install {wheel.name}: {exc}",
                stage="build-env",
                file=str(wheel),
            ) from exc


def is_running_interpreter(python: str) -> bool:
    return Path(python).resolve() == Path(sys.executable).resolve()


def _own_venv_paths(path: Path) -> dict[str, str] | None:
    """The paths a venv of the running interpreter has, without starting it.

    Python 3.11 names the layout of a venv (the ``venv`` scheme), so asking a new
    interpreter is only needed for another Python.
    """
    if "venv" not in sysconfig.get_scheme_names():
        return None
    base = {"base": str(path), "platbase": str(path)}
    p = sysconfig.get_paths(scheme="venv", vars=base)
    return {
        "purelib": p["purelib"],
        "platlib": p["platlib"],
        "scripts": p["scripts"],
        "data": p["data"],
        "python_version": sysconfig.get_python_version(),
    }
