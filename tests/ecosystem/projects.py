"""One fake release (name + version) and the source tree it is built from.

A :class:`FakeProject` is plain data; :meth:`FakeProject.source_files` renders it into the
files of a real source tree: ``pyproject.toml`` with a ``[tool.fakebackend]`` table the
backend reads, the package's module, and the backend itself when it is in-tree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

IN_TREE = "in-tree"
"""Default backend: ``_backend/fakebackend.py`` inside the tree, found via ``backend-path``."""

SELF_HOSTED = "self-hosted"
"""The project's own package is its backend (``backend-path = ["."]``), like flit-core."""

IN_TREE_BACKEND_DIR = "_backend"
IN_TREE_BACKEND_MODULE = "fakebackend"

BACKEND_SOURCE = (Path(__file__).parent / "fakebackend.py").read_text(encoding="utf-8")
"""The backend's source text, shipped verbatim in every fake source tree that needs it."""


def normalize(name: str) -> str:
    """PEP 503 canonical form (kept here so the harness needs no third-party import)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_name(name: str) -> str:
    """The file-name form (PEP 625 / wheel): normalized, with underscores."""
    return normalize(name).replace("-", "_")


@dataclass(frozen=True)
class FakeProject:
    """One release of a fake project, everything its backend and the index need.

    ``backend`` is :data:`IN_TREE` (default), :data:`SELF_HOSTED` (requires
    ``provides_backend``), or the import name of a build-tool package that must then be
    listed in ``build_requires``. Fields named like the backend's table keys are passed to
    it unchanged; see ``fakebackend.py`` for what each one does at build time.
    """

    name: str
    version: str
    summary: str = ""
    requires: tuple[str, ...] = ()
    extras: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    requires_python: str | None = None
    build_requires: tuple[str, ...] = ()
    backend: str = IN_TREE
    provides_backend: bool = False
    """The package module is the fake backend: this project is a build tool."""
    backend_imports: tuple[str, ...] = ()
    """Modules a build-tool package imports when loaded (its runtime dependencies)."""
    wheel_requires: tuple[str, ...] = ()
    wheel_requires_if_missing: Mapping[str, str] = field(default_factory=dict)
    """Requirement -> module: asked for by get_requires_for_build_wheel only while the
    module cannot be imported in the build environment."""
    wheel_requires_if_no_program: Mapping[str, str] = field(default_factory=dict)
    """Requirement -> program: asked for by get_requires_for_build_wheel only while
    ``shutil.which`` finds no such program on PATH."""
    sdist_requires: tuple[str, ...] = ()
    build_imports: tuple[str, ...] = ()
    fail: str | None = None
    fail_hooks: tuple[str, ...] = ()
    read_env: tuple[str, ...] = ()
    dynamic: tuple[str, ...] = ()
    """PEP 643 fields left dynamic in PKG-INFO, e.g. ``("Requires-Dist",)``."""
    publish_sdist: bool = True
    publish_wheel: bool = False
    """Also publish an "upstream" wheel built in-process (its PEP 658 metadata is served)."""
    yanked: bool | str = False
    extra_files: Mapping[str, str] = field(default_factory=dict)
    """More source files (relative posix path -> text); may replace generated ones."""
    build_seconds: float = 0.0
    """How long build_wheel takes (it sleeps): a build that is still running when a test acts."""

    @property
    def canonical_name(self) -> str:
        return normalize(self.name)

    @property
    def package(self) -> str:
        """The import name of the project's single package."""
        return dist_name(self.name)

    @property
    def sdist_filename(self) -> str:
        return f"{dist_name(self.name)}-{self.version}.tar.gz"

    @property
    def wheel_filename(self) -> str:
        return f"{dist_name(self.name)}-{self.version}-py3-none-any.whl"

    def build_system(self) -> tuple[list[str], str, list[str] | None]:
        """(requires, build-backend, backend-path) of the project's ``[build-system]``."""
        requires = list(self.build_requires)
        if self.backend == IN_TREE:
            return requires, IN_TREE_BACKEND_MODULE, [IN_TREE_BACKEND_DIR]
        if self.backend == SELF_HOSTED:
            if not self.provides_backend:
                raise ValueError(f"{self.name}: a self-hosted backend must provide_backend")
            return requires, self.package, ["."]
        return requires, self.backend, None

    def pyproject_toml(self) -> str:
        requires, backend, backend_path = self.build_system()
        lines = ["[build-system]", f"requires = {_array(requires)}"]
        lines.append(f"build-backend = {_str(backend)}")
        if backend_path is not None:
            lines.append(f"backend-path = {_array(backend_path)}")
        table: dict[str, str | list[str] | None] = {
            "name": self.name,
            "version": self.version,
            "summary": self.summary or None,
            "requires-python": self.requires_python,
            "dependencies": list(self.requires),
            "packages": [self.package],
            "wheel-requires": list(self.wheel_requires),
            "sdist-requires": list(self.sdist_requires),
            "build-imports": list(self.build_imports),
            "fail": self.fail,
            "fail-hooks": list(self.fail_hooks),
            "read-env": list(self.read_env),
            "dynamic": list(self.dynamic),
            "build-seconds": str(self.build_seconds) if self.build_seconds else None,
        }
        lines += ["", "[tool.fakebackend]"]
        for key, value in table.items():
            if value is None:
                continue
            lines.append(f"{key} = {_str(value) if isinstance(value, str) else _array(value)}")
        if self.wheel_requires_if_missing:
            lines += ["", "[tool.fakebackend.wheel-requires-if-missing]"]
            lines += [f"{_str(r)} = {_str(m)}" for r, m in self.wheel_requires_if_missing.items()]
        if self.wheel_requires_if_no_program:
            lines += ["", "[tool.fakebackend.wheel-requires-if-no-program]"]
            lines += [
                f"{_str(r)} = {_str(p)}" for r, p in self.wheel_requires_if_no_program.items()
            ]
        if self.extras:
            lines += ["", "[tool.fakebackend.optional-dependencies]"]
            lines += [f"{_str(extra)} = {_array(reqs)}" for extra, reqs in self.extras.items()]
        return "\n".join(lines) + "\n"

    def module_source(self) -> str:
        if not self.provides_backend:
            return f'"""{self.summary or self.name}"""\n\n__version__ = {_str(self.version)}\n'
        imports = "".join(
            f"import {module}  # noqa: E402, F401\n" for module in self.backend_imports
        )
        if imports:
            # Appended, not prepended: the backend text starts with its docstring, and a
            # missing runtime dependency must make importing the backend fail.
            imports = "\n# Runtime dependencies of this build tool.\n" + imports
        return BACKEND_SOURCE + imports

    def source_files(self) -> dict[str, str]:
        """Every file of the source tree, as relative posix path -> text."""
        files = {
            "pyproject.toml": self.pyproject_toml(),
            f"{self.package}/__init__.py": self.module_source(),
        }
        if self.backend == IN_TREE:
            files[f"{IN_TREE_BACKEND_DIR}/{IN_TREE_BACKEND_MODULE}.py"] = BACKEND_SOURCE
        files.update(self.extra_files)
        return files

    def write_source_tree(self, root: Path) -> Path:
        """Write the source tree under ``root`` (created) and return ``root``."""
        for rel, text in self.source_files().items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return root


def _str(value: str) -> str:
    # A JSON string is a valid TOML basic string, escapes included.
    return json.dumps(value)


def _array(values: Iterable[str]) -> str:
    return "[" + ", ".join(_str(v) for v in values) + "]"
