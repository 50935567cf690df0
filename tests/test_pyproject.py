"""Build-requirement overrides written into pyproject.toml keep the rest of the file."""

from __future__ import annotations

import tomllib
from pathlib import Path

from affineur.config import BuildRequiresOverride
from affineur.pep517 import BuildSystem, override_requires, write_build_system

ORIGINAL = """\
# The project's own comment stays.
[build-system]
requires = ["setuptools>=61", "wheel"]  # why wheel: old habit
build-backend = "setuptools.build_meta"

[project]
name = "demo"
"""


def test_add_remove_replace_by_project_name() -> None:
    override = BuildRequiresOverride(
        add=("cython<3",), remove=("Wheel",), replace={"setuptools": "setuptools<70"}
    )
    assert override_requires(["setuptools>=61", "wheel"], override) == ("setuptools<70", "cython<3")


def test_only_requires_changes_and_comments_survive(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(ORIGINAL)
    system = BuildSystem(("setuptools<70", "cython<3"), "setuptools.build_meta", ())
    write_build_system(tmp_path, system)
    text = (tmp_path / "pyproject.toml").read_text()
    assert text.startswith("# The project's own comment stays.\n[build-system]\n")
    assert text.endswith('build-backend = "setuptools.build_meta"\n\n[project]\nname = "demo"\n')
    data = tomllib.loads(text)
    assert data["build-system"]["requires"] == ["setuptools<70", "cython<3"]


def test_a_missing_pyproject_is_created_with_the_legacy_backend(tmp_path: Path) -> None:
    system = BuildSystem(("setuptools>=40.8.0", "cython"), "setuptools.build_meta:__legacy__", ())
    write_build_system(tmp_path, system)
    data = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    assert data == {
        "build-system": {
            "requires": ["setuptools>=40.8.0", "cython"],
            "build-backend": "setuptools.build_meta:__legacy__",
        }
    }
