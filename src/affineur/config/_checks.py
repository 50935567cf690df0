"""What a schema cannot say about a config file, checked once the schema has passed.

Requirement strings and version specifiers parse, the variants a file names
exist, patch files are regular files, ``build_dir`` stays inside the sdist,
``pass_env`` names no secret. These checks only see documents that passed their
schema, so they may trust types; each problem names its file, key path and line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from affineur.config._documents import Document
from affineur.config._patches import patch_file_problem
from affineur.config._remote import remote_cache_problems
from affineur.config._schema import KeyPath, did_you_mean
from affineur.config._secrets import is_secret_name
from affineur.errors import AffineurError

__all__ = [
    "PROJECT_NAME",
    "check_collection",
    "check_override",
    "check_variant",
    "duplicate_overrides",
    "patch_tree_problems",
]

# PEP 508 project names, for override file stems.
PROJECT_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


def _requirement_problems(
    doc: Document, values: Sequence[str], key_path: KeyPath, *, extras: bool = True
) -> list[AffineurError]:
    problems = []
    for index, text in enumerate(values):
        problem = _requirement_problem(text, extras=extras)
        if problem:
            problems.append(doc.problem(problem, (*key_path, index)))
    return problems


def _requirement_problem(text: str, *, extras: bool = True) -> str | None:
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        first = str(exc).splitlines()[0]
        return f"invalid requirement {text!r}: {first}"
    if requirement.extras and not extras:
        return f"constraint {text!r} must not have extras"
    return None


def _name_problem(text: str) -> str | None:
    if not PROJECT_NAME.match(text):
        return f"{text!r} is not a valid package name"
    return None


def check_collection(doc: Document, variants: Mapping[str, Document]) -> list[AffineurError]:
    problems = _requirement_problems(doc, doc.data["requirements"], ("requirements",))
    problems += _requirement_problems(
        doc, doc.data.get("constraints", []), ("constraints",), extras=False
    )
    for index, name in enumerate(doc.data["variants"]):
        if name not in variants:
            problems.append(_unknown_variant(doc, name, ("variants", index), variants))
    return problems


def _unknown_variant(
    doc: Document, name: str, key_path: KeyPath, variants: Mapping[str, Document]
) -> AffineurError:
    hint = did_you_mean(name, variants) or (
        f"known variants: {', '.join(sorted(variants))}"
        if variants
        else "create variants/<name>.yaml"
    )
    return doc.problem(f"unknown variant {name!r}", key_path, hint)


def check_variant(doc: Document, variants: Mapping[str, Document]) -> list[AffineurError]:
    problems: list[AffineurError] = []
    extends = doc.data.get("extends")
    if extends is not None and extends not in variants:
        problems.append(_unknown_variant(doc, extends, ("extends",), variants))
    if "defaults" in doc.data:
        problems += _settings_problems(doc, doc.data["defaults"], ("defaults",))
    for index, name in enumerate(doc.data.get("pass_env", [])):
        problems += _pass_env_problems(doc, name, ("pass_env", index))
    remote = doc.data.get("remote_cache")
    if remote is not None:
        for path, message, hint in remote_cache_problems(
            remote["url"], remote.get("mode"), remote.get("options") or {}
        ):
            problems.append(doc.problem(message, ("remote_cache", *path), hint))
    platform = doc.data.get("platform", {})
    for key in ("platform_release", "platform_version"):
        if key in platform:
            problems.append(
                doc.problem(
                    f"{key} describes the machine that locks, not the target",
                    ("platform", key),
                    "remove it: a lock must not change with the kernel it was made on",
                )
            )
    full = platform.get("python_full_version")
    python = doc.data.get("python")
    if full is not None and python is not None and not full.startswith(f"{python}."):
        problems.append(
            doc.problem(
                f"python_full_version {full!r} is not a release of python {python!r}",
                ("platform", "python_full_version"),
            )
        )
    return problems


def patch_tree_problems(base: Path) -> list[AffineurError]:
    """Every entry under overrides/patches/ that is neither a folder nor a regular file."""
    problems: list[AffineurError] = []
    if not base.is_dir() or base.is_symlink():
        return problems
    for dirpath, dirnames, filenames in os.walk(base):
        for name in sorted([*dirnames, *filenames]):
            path = Path(dirpath, name)
            if name in dirnames and not path.is_symlink():
                continue
            problem = patch_file_problem(path)
            if problem:
                problems.append(
                    AffineurError(
                        f"{problem}",
                        file=str(path),
                        stage="config",
                        hint="patches must be regular files in overrides/patches/",
                    )
                )
    return problems


def duplicate_overrides(overrides: Iterable[Document]) -> list[AffineurError]:
    by_name: dict[str, list[Document]] = {}
    for doc in overrides:
        by_name.setdefault(canonicalize_name(doc.name), []).append(doc)
    problems = []
    for name, docs in sorted(by_name.items()):
        if len(docs) > 1:
            files = " and ".join(d.path.name for d in docs)
            problems.append(
                docs[0].problem(
                    f"{files} both configure package {name!r}",
                    (),
                    "merge them into one file",
                )
            )
    return problems


def check_override(doc: Document, variants: Mapping[str, Document]) -> list[AffineurError]:
    problems = _settings_problems(doc, doc.data, ())
    for variant, settings in doc.data.get("variants", {}).items():
        if variant not in variants:
            problems.append(_unknown_variant(doc, variant, ("variants", variant), variants))
        problems += _settings_problems(doc, settings, ("variants", variant))
    for spec, settings in doc.data.get("versions", {}).items():
        try:
            SpecifierSet(spec)
        except InvalidSpecifier:
            problems.append(
                doc.problem(
                    f"invalid version specifier {spec!r}",
                    ("versions", spec),
                    "use a PEP 440 specifier such as '>=2.0,<3' or '==1.2.*'",
                )
            )
        problems += _settings_problems(doc, settings, ("versions", spec))
    return problems


def _settings_problems(
    doc: Document, settings: Mapping[str, Any], at: KeyPath
) -> list[AffineurError]:
    """What the schema cannot check in one block of package settings."""
    problems = _requirement_problems(doc, settings.get("constraints", []), (*at, "constraints"))
    build_requires = settings.get("build_requires", {})
    problems += _requirement_problems(
        doc, build_requires.get("add", []), (*at, "build_requires", "add")
    )
    for index, name in enumerate(build_requires.get("remove", [])):
        problem = _name_problem(name)
        if problem:
            problems.append(doc.problem(problem, (*at, "build_requires", "remove", index)))
    for name, requirement in build_requires.get("replace", {}).items():
        path = (*at, "build_requires", "replace", name)
        problem = _name_problem(name) or _requirement_problem(requirement)
        if problem:
            problems.append(doc.problem(problem, path))
    for index, name in enumerate(settings.get("pass_env", [])):
        problems += _pass_env_problems(doc, name, (*at, "pass_env", index))
    if "git" in settings:
        url = settings["git"]["url"]
        if "://" not in url and ":" not in url.split("/", 1)[0] and not url.startswith("/"):
            problems.append(
                doc.problem(
                    f"git url {url!r} is a relative path",
                    (*at, "git", "url"),
                    "write an absolute path or a file:// URL (git would resolve it "
                    "against its own working directory, not this file)",
                )
            )
        for other in ("download_source", "prebuilt"):
            if settings.get(other):
                problems.append(
                    doc.problem(
                        f"'git' and '{other}' both say where the package comes from",
                        (*at, "git"),
                        "keep one of them",
                    )
                )
    if "build_dir" in settings:
        problem = _build_dir_problem(settings["build_dir"])
        if problem:
            problems.append(doc.problem(problem, (*at, "build_dir")))
    return problems


def _pass_env_problems(doc: Document, name: str, key_path: KeyPath) -> list[AffineurError]:
    if is_secret_name(name.rstrip("*")):
        return [
            doc.problem(
                f"{name!r} looks like a secret; builds never see such variables",
                key_path,
                "builds run without credentials: remove it from pass_env",
            )
        ]
    return []


def _build_dir_problem(build_dir: str) -> str | None:
    """build_dir is joined to the unpacked sdist; it must not lead out of it."""
    posix, windows = PurePosixPath(build_dir), PureWindowsPath(build_dir)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        return f"build_dir {build_dir!r} must be a relative path inside the sdist"
    if ".." in posix.parts or ".." in windows.parts:
        return f"build_dir {build_dir!r} must not contain '..'"
    return None
