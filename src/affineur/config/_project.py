"""The project's declarative files, loaded into typed, immutable models.

A project directory holds ``collections/*.toml`` (what to build),
``variants/*.yaml`` (how to build for a target) and ``overrides/*.yaml`` (per
package adjustments; ``overrides/patches/`` holds patch files). :func:`load_project`
reads and checks all of them and raises a single :class:`AffineurError` that lists
every problem in every file: a user fixing a pull request should not have to
rerun once per typo.

Checks happen in three passes: syntax (file and line from the parser), the JSON
Schema of each file, then what a schema cannot say (requirement strings parse,
variants referenced exist, ``extends`` has no loop, paths stay inside the sdist).
The third pass only looks at files that passed the second, so it may trust types.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import Any, Literal, cast

import yaml
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from affineur.config._patches import patch_file_problem
from affineur.config._remote import remote_cache_problems
from affineur.config._schema import (
    KeyPath,
    Lines,
    did_you_mean,
    line_of,
    raise_problems,
    schema_problems,
)
from affineur.config._secrets import is_secret_name
from affineur.errors import AffineurError
from affineur.limits import TOO_DEEP, too_deep

__all__ = [
    "TARGET_MARKERS",
    "Collection",
    "Discovery",
    "Evidence",
    "PackageOverride",
    "Project",
    "SandboxChoice",
    "SandboxSetting",
    "Variant",
    "load_project",
    "target_environment",
]

Discovery = Literal["wheels", "source"]

COLLECTIONS = "collections"
VARIANTS = "variants"
OVERRIDES = "overrides"
PATCHES = "patches"

# Collection and variant names end up in doit task names ("build:cpu:requests-2.32.3")
# and directory names, so keep them to characters that are safe in both.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# PEP 508 project names, for override file stems.
_PROJECT_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


@dataclass(frozen=True)
class Collection:
    """``collections/<name>.toml``: top-level requirements built for some variants."""

    name: str
    description: str
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    variants: tuple[str, ...]
    prereleases: bool
    file: Path


SandboxChoice = Literal["auto", "bubblewrap", "unshare", "none"]


@dataclass(frozen=True)
class SandboxSetting:
    """A variant's ``sandbox``: which implementation, and what it adds to a build's view."""

    kind: SandboxChoice = "auto"
    read_only: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()

    @property
    def relaxed(self) -> bool:
        return self.kind == "none" or bool(self.read_only or self.writable)


@dataclass(frozen=True)
class Evidence:
    """Site settings for the evidence each build carries (``evidence:`` in a variant).

    ``supplier`` and ``namespace`` go into every wheel's SBOM, so they are build
    inputs; ``builder_id`` names the builder in provenance statements, which sit
    beside the wheel and so change no wheel byte.
    """

    supplier: str | None = None
    supplier_url: str | None = None
    namespace: str | None = None
    builder_id: str | None = None


@dataclass(frozen=True)
class Variant:
    """``variants/<name>.yaml`` with ``extends`` already applied.

    ``defaults`` holds raw package settings (the schema of an override file
    without ``variants``/``versions``); :mod:`affineur.settings` merges them.
    """

    name: str
    description: str
    python: str
    platform: Mapping[str, str]
    indexes: tuple[str, ...]
    discovery: Discovery
    env: Mapping[str, str]
    resources: Mapping[str, float]
    defaults: Mapping[str, Any]
    changelog: tuple[str, ...]
    timeout: float | None
    network_isolation: bool
    file: Path
    remote_cache: Mapping[str, Any] | None = None
    """The validated ``remote_cache`` mapping (see ``effective_remote_cache``)."""
    sandbox: SandboxSetting = field(default_factory=SandboxSetting)
    """The filesystem sandbox of every hook call (see ``pep517._sandbox``)."""
    executor: str | None = None
    """``local`` or ``dask://host:port``; see :func:`affineur.config.effective_executor`."""
    files: tuple[Path, ...] = ()
    """This variant's file and those of every variant it extends, nearest first."""
    pass_env: tuple[str, ...] = ()
    """Parent variables passed to builds beyond the built-in list (see pep517 isolation)."""
    evidence: Evidence = field(default_factory=Evidence)
    interpreter: str | None = None
    """The Python that builds it, by path; None: a ``python`` X.Y found on this machine."""
    crates_index: str | None = None
    """The crates registry Rust sdists' crates are vendored from (None: cargo's default)."""


@dataclass(frozen=True)
class PackageOverride:
    """``overrides/<name>.yaml``; ``name`` is canonical, ``raw`` is the validated file."""

    name: str
    raw: Mapping[str, Any]
    file: Path


@dataclass(frozen=True)
class Project:
    root: Path
    collections: Mapping[str, Collection] = field(default_factory=dict)
    variants: Mapping[str, Variant] = field(default_factory=dict)
    overrides: Mapping[str, PackageOverride] = field(default_factory=dict)
    """Keyed by canonical package name."""

    def override_for(self, package: str) -> PackageOverride | None:
        return self.overrides.get(canonicalize_name(package))


TARGET_MARKERS = (
    "implementation_name",
    "implementation_version",
    "os_name",
    "platform_machine",
    "platform_python_implementation",
    "platform_system",
    "python_full_version",
    "python_version",
    "sys_platform",
)
"""The PEP 508 values that decide a lock: which releases, dependencies and wheel
tags fit. ``platform_release`` and ``platform_version`` (the kernel) are left out:
they describe the locking host, and a lock must not change with it."""


def target_environment(variant: Variant, host: Mapping[str, str] | None = None) -> dict[str, str]:
    """The marker values the variant's packages are resolved for, as the lock records them.

    What the variant declares (``python``, ``platform``) wins; the rest defaults
    to the running machine's values (``host``, the running interpreter's marker
    environment unless given), but only the values in :data:`TARGET_MARKERS`, so
    two machines of the same kind give the same target. A Python given as ``X.Y``
    stands for the whole series: its full version is ``X.Y.0`` unless
    ``platform.python_full_version`` says otherwise, as installers do for a target
    Python given without its patch release.
    """
    base = {k: str(v) for k, v in (default_environment() if host is None else host).items()}
    env = {k: base[k] for k in TARGET_MARKERS if k in base}
    env["python_version"] = variant.python
    env["python_full_version"] = f"{variant.python}.0"
    env.update(variant.platform)
    if env.get("implementation_name") == "cpython":
        env["implementation_version"] = env["python_full_version"]
    return env


def load_project(root: Path, *, memo: Path | None = None) -> Project:
    """Read and check every config file under ``root``; raise once with all problems.

    ``memo`` (a folder) remembers files that passed their schema, so an unchanged
    config is not checked again (see :func:`schema_problems`).
    """
    if not (root / COLLECTIONS).is_dir():
        raise AffineurError(
            f"not an affineur project: {root / COLLECTIONS} is not a directory",
            hint="run affineur from the repository root, or create collections/<name>.toml",
            stage="config",
        )
    problems: list[AffineurError] = []
    collections = _read_all(root / COLLECTIONS, ".toml", "collection", problems, memo)
    variants = _read_all(root / VARIANTS, ".yaml", "variant", problems, memo)
    overrides = _read_all(root / OVERRIDES, ".yaml", "overrides", problems, memo)

    for doc in collections.values():
        if doc.valid:
            problems += _check_collection(doc, variants)
    for doc in variants.values():
        if doc.valid:
            problems += _check_variant(doc, variants)
    problems += _extends_loops(variants)
    problems += _patch_tree_problems(root / OVERRIDES / PATCHES)
    problems += _duplicate_overrides(overrides.values())
    for doc in overrides.values():
        if not _PROJECT_NAME.match(doc.name):
            problems.append(doc.problem(f"{doc.name!r} is not a valid package name", ()))
        if doc.valid:
            problems += _check_override(doc, variants)
    problems.sort(key=lambda p: (p.file or "", p.line or 0))
    raise_problems(problems)

    return Project(
        root=root,
        collections=MappingProxyType(
            {name: _collection(doc) for name, doc in sorted(collections.items())}
        ),
        variants=MappingProxyType({name: _variant(name, variants) for name in sorted(variants)}),
        overrides=MappingProxyType(
            {
                canonicalize_name(doc.name): PackageOverride(
                    canonicalize_name(doc.name), _freeze(doc.data), doc.path
                )
                for doc in sorted(overrides.values(), key=lambda d: d.name)
            }
        ),
    )


# --- reading files ------------------------------------------------------------------


@dataclass
class _Document:
    """One parsed config file, with where each key is, and whether it passed its schema."""

    name: str
    path: Path
    data: dict[str, Any]
    lines: Lines
    valid: bool

    def problem(self, message: str, key_path: KeyPath, hint: str | None = None) -> AffineurError:
        return AffineurError(
            message,
            hint=hint,
            file=str(self.path),
            key_path=key_path,
            line=line_of(self.lines, key_path),
            stage="config",
        )


def _read_all(
    directory: Path,
    suffix: str,
    schema: str,
    problems: list[AffineurError],
    memo: Path | None = None,
) -> dict[str, _Document]:
    documents: dict[str, _Document] = {}
    if not directory.is_dir():
        return documents
    for path in sorted(directory.iterdir()):
        if suffix == ".yaml" and path.suffix == ".yml":
            # Silently ignoring it would silently drop the user's settings.
            problems.append(
                AffineurError(
                    "config files must end in .yaml",
                    hint=f"rename it to {path.with_suffix('.yaml').name}",
                    file=str(path),
                    stage="config",
                )
            )
            continue
        if path.suffix != suffix or not path.is_file():
            continue
        data, lines, found = _parse(path)
        if data is not None:
            found += schema_problems(data, schema, file=str(path), lines=lines, memo=memo)
        if schema != "overrides" and not _NAME.match(path.stem):
            found.append(
                AffineurError(
                    f"{path.stem!r} is not a valid name",
                    hint="use letters, digits, '.', '_' and '-' (it is used in task names)",
                    file=str(path),
                    stage="config",
                )
            )
        problems += found
        valid = not found and isinstance(data, dict)
        documents[path.stem] = _Document(
            path.stem, path, data if isinstance(data, dict) else {}, lines, valid
        )
    return documents


# Config files are small: a collection of a few thousand requirements is a few
# hundred KB. The cap keeps a pasted log or a generated monster from costing
# minutes of parsing before anyone sees an error.
MAX_CONFIG_BYTES = 2 << 20
# Nodes a YAML document may hold once its aliases are expanded. Aliases are
# handy for sharing an env block, but every consumer (line map, schema check,
# merging) walks the expanded tree: ten nested aliases of ten items each
# ("billion laughs") would be 10^10 nodes from a 1 KB file.
MAX_YAML_NODES = 100_000


def _parse(path: Path) -> tuple[object, Lines, list[AffineurError]]:
    """(data, lines, problems); data is None when the file cannot be parsed at all."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            return (
                None,
                {},
                [
                    AffineurError(
                        f"the file is {size} bytes; config files are limited to "
                        f"{MAX_CONFIG_BYTES} bytes",
                        file=str(path),
                        stage="config",
                    )
                ],
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, {}, [AffineurError(f"cannot read: {exc}", file=str(path), stage="config")]
    parse = _parse_toml if path.suffix == ".toml" else _parse_yaml
    data, lines, problems = parse(text, str(path))
    if data is not None:
        problems += _non_finite(data, lines, str(path))
    return data, lines, problems


def _non_finite(data: object, lines: Lines, file: str) -> list[AffineurError]:
    """Infinite and NaN numbers (YAML's ``.inf``, TOML's ``nan``): every comparison
    with NaN is false, so a ``max_compression_ratio: .nan`` would pass the schema and
    switch the limit off. No setting means either."""
    problems = []
    stack: list[tuple[object, KeyPath]] = [(data, ())]
    while stack:
        value, at = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(
                AffineurError(
                    f"expected a finite number, got {value}",
                    file=file,
                    line=lines.get(at),
                    key_path=at,
                    stage="config",
                )
            )
        elif isinstance(value, dict):
            stack += [(v, (*at, str(k))) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, (*at, i)) for i, v in enumerate(value)]
    return sorted(problems, key=lambda p: [str(k) for k in p.key_path])


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)$")


def _parse_toml(text: str, file: str) -> tuple[object, Lines, list[AffineurError]]:
    try:
        data = tomllib.loads(text)
        if too_deep(data):
            raise RecursionError
    except RecursionError:
        return None, {}, [AffineurError(TOO_DEEP, file=file, stage="config")]
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_POSITION.search(message)
        line = int(found.group(1)) if found else None
        message = _TOML_POSITION.sub("", message)
        return (
            None,
            {},
            [AffineurError(f"invalid TOML: {message}", file=file, line=line, stage="config")],
        )
    return data, _toml_lines(text), []


_TOML_TABLE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?")
_TOML_BARE_OR_QUOTED = r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'"""
_TOML_KEY = re.compile(
    rf"^\s*((?:{_TOML_BARE_OR_QUOTED})(?:\s*\.\s*(?:{_TOML_BARE_OR_QUOTED}))*)\s*="
)
_TOML_KEY_PART = re.compile(_TOML_BARE_OR_QUOTED)


def _toml_lines(text: str) -> Lines:
    """Lines of table headers and ``key =`` lines.

    The standard library's parser keeps no positions; collection files are
    small and flat, so matching headers and assignments line by line locates
    every key a collection can have. Lines inside multi-line strings may be
    mistaken for keys, which at worst points an error at a nearby line.
    """
    lines: dict[KeyPath, int] = {(): 1}
    table: KeyPath = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TOML_TABLE.match(line)
        if header:
            table = tuple(_toml_key_parts(header.group(1)))
            lines.setdefault(table, number)
            continue
        key = _TOML_KEY.match(line)
        if key:
            lines.setdefault(table + tuple(_toml_key_parts(key.group(1))), number)
    return lines


def _toml_key_parts(dotted: str) -> list[str]:
    return [part.strip("\"'") for part in _TOML_KEY_PART.findall(dotted)]


# libyaml's loader where PyYAML has it (its wheels do): the pure-Python scanner
# costs time in proportion to tokens times flow depth, so a hostile file of deep
# "[[[[" takes seconds before any limit can look at it; libyaml refuses such
# nesting itself, at once.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(text: str, file: str) -> tuple[object, Lines, list[AffineurError]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            # Measured on the node graph (linear in the file) before anything walks
            # the expanded tree.
            problem = _alias_problem(node, file)
            if problem is not None:
                return None, {}, [problem]
            if too_deep(node, _children):
                raise RecursionError
        data = loader.construct_document(node) if node is not None else {}
    except RecursionError:
        return None, {}, [AffineurError(TOO_DEEP, file=file, stage="config")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        if "maximum nesting depth" in detail:  # libyaml's own limit, past ours
            return None, {}, [AffineurError(TOO_DEEP, file=file, stage="config")]
        return (
            None,
            {},
            [
                AffineurError(
                    f"invalid YAML: {detail}",
                    file=file,
                    line=mark.line + 1 if mark else None,
                    stage="config",
                )
            ],
        )
    except yaml.YAMLError as exc:
        return None, {}, [AffineurError(f"invalid YAML: {exc}", file=file, stage="config")]
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {(): 1}
    problems: list[AffineurError] = []
    if node is not None:
        _yaml_lines(node, (), lines, problems, file)
    return _string_keys(data), lines, problems


def _alias_problem(root: yaml.Node, file: str) -> AffineurError | None:
    """An error when aliases make the document recursive or too large once expanded."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk of the node graph: each distinct node is sized once,
    # so a bomb costs as much as its text, not as much as its expansion.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        ident = id(node)
        if children_done:
            open_nodes.discard(ident)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            sizes[ident] = total
            if total > MAX_YAML_NODES:
                return AffineurError(
                    f"YAML aliases expand this document to more than {MAX_YAML_NODES} "
                    "values; refused",
                    hint="write the values out, or share fewer of them through '*' aliases",
                    file=file,
                    line=node.start_mark.line + 1,
                    stage="config",
                )
            continue
        if ident in sizes:
            continue
        if ident in open_nodes:
            return AffineurError(
                "a YAML alias refers to a value that contains it (a recursive document)",
                file=file,
                line=node.start_mark.line + 1,
                stage="config",
            )
        open_nodes.add(ident)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _yaml_lines(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    problems: list[AffineurError],
    file: str,
) -> None:
    """Record the line of every key and item; report what safe_load silently accepts.

    A repeated key would make YAML keep only the last value, and an unquoted key
    like ``1.10`` would become the number 1.1: both lose what the user wrote.
    """
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            line = key_node.start_mark.line + 1
            if key_node.tag != "tag:yaml.org,2002:str":
                problems.append(
                    AffineurError(
                        f"key {key!r} is not a string",
                        hint="quote it",
                        file=file,
                        key_path=child,
                        line=line,
                        stage="config",
                    )
                )
            if key in seen:
                problems.append(
                    AffineurError(
                        f"duplicate key {key!r}",
                        hint="YAML keeps only the last one; merge them",
                        file=file,
                        key_path=child,
                        line=line,
                        stage="config",
                    )
                )
            seen.add(key)
            lines.setdefault(child, line)
            _yaml_lines(value_node, child, lines, problems, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _yaml_lines(item, (*path, index), lines, problems, file)


def _string_keys(data: object) -> object:
    """Keys as the user wrote them; non-string keys are already reported."""
    if isinstance(data, dict):
        return {str(k): _string_keys(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_string_keys(v) for v in data]
    return data


# --- checks beyond the schema -------------------------------------------------------


def _requirement_problems(
    doc: _Document, values: Sequence[str], key_path: KeyPath, *, extras: bool = True
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
    if not _PROJECT_NAME.match(text):
        return f"{text!r} is not a valid package name"
    return None


def _check_collection(doc: _Document, variants: Mapping[str, _Document]) -> list[AffineurError]:
    problems = _requirement_problems(doc, doc.data["requirements"], ("requirements",))
    problems += _requirement_problems(
        doc, doc.data.get("constraints", []), ("constraints",), extras=False
    )
    for index, name in enumerate(doc.data["variants"]):
        if name not in variants:
            problems.append(_unknown_variant(doc, name, ("variants", index), variants))
    return problems


def _unknown_variant(
    doc: _Document, name: str, key_path: KeyPath, variants: Mapping[str, _Document]
) -> AffineurError:
    hint = did_you_mean(name, variants) or (
        f"known variants: {', '.join(sorted(variants))}"
        if variants
        else "create variants/<name>.yaml"
    )
    return doc.problem(f"unknown variant {name!r}", key_path, hint)


def _check_variant(doc: _Document, variants: Mapping[str, _Document]) -> list[AffineurError]:
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


def _extends_loops(variants: Mapping[str, _Document]) -> list[AffineurError]:
    """One problem per ``extends`` loop, shown as its path (``a -> b -> a``)."""
    problems: list[AffineurError] = []
    reported: set[frozenset[str]] = set()
    for start in sorted(variants):
        chain: list[str] = []
        current: str | None = start
        while current is not None and current in variants and current not in chain:
            chain.append(current)
            extends = variants[current].data.get("extends")
            current = extends if isinstance(extends, str) else None
        if current is None or current not in chain:
            continue
        loop = chain[chain.index(current) :]
        if frozenset(loop) in reported:
            continue
        reported.add(frozenset(loop))
        first = min(loop)
        at = loop.index(first)
        ordered = [*loop[at:], *loop[:at], first]
        problems.append(
            variants[first].problem(
                "extends loop: " + " -> ".join(ordered),
                ("extends",),
                "remove 'extends' from one of these variants",
            )
        )
    return problems


def _patch_tree_problems(base: Path) -> list[AffineurError]:
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


def _duplicate_overrides(overrides: Iterable[_Document]) -> list[AffineurError]:
    by_name: dict[str, list[_Document]] = {}
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


def _check_override(doc: _Document, variants: Mapping[str, _Document]) -> list[AffineurError]:
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
    doc: _Document, settings: Mapping[str, Any], at: KeyPath
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


def _pass_env_problems(doc: _Document, name: str, key_path: KeyPath) -> list[AffineurError]:
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


# --- building models ----------------------------------------------------------------


def _collection(doc: _Document) -> Collection:
    data = doc.data
    return Collection(
        name=doc.name,
        description=data.get("description", ""),
        requirements=tuple(data["requirements"]),
        constraints=tuple(data.get("constraints", ())),
        variants=tuple(data["variants"]),
        prereleases=bool(data.get("options", {}).get("prereleases", False)),
        file=doc.path,
    )


def _variant(name: str, documents: Mapping[str, _Document]) -> Variant:
    data = _extended(name, documents)
    return Variant(
        name=name,
        description=data.get("description", ""),
        python=data.get("python", f"{sys.version_info.major}.{sys.version_info.minor}"),
        platform=MappingProxyType(dict(data.get("platform", {}))),
        indexes=tuple(data.get("indexes", ())),
        discovery=cast(Discovery, data.get("discovery", "wheels")),
        env=MappingProxyType(dict(data.get("env", {}))),
        resources=MappingProxyType({k: float(v) for k, v in data.get("resources", {}).items()}),
        defaults=_freeze(data.get("defaults", {})),
        changelog=tuple(data.get("changelog", ())),
        timeout=float(data["timeout"]) if data.get("timeout") is not None else None,
        network_isolation=bool(data.get("network_isolation", True)),
        sandbox=SandboxSetting(
            kind=cast(SandboxChoice, data.get("sandbox", {}).get("kind", "auto")),
            read_only=tuple(data.get("sandbox", {}).get("read_only", ())),
            writable=tuple(data.get("sandbox", {}).get("writable", ())),
        ),
        file=documents[name].path,
        remote_cache=_freeze(data["remote_cache"]) if "remote_cache" in data else None,
        executor=data.get("executor"),
        files=tuple(documents[n].path for n in _chain(name, documents)),
        pass_env=tuple(data.get("pass_env", ())),
        evidence=_evidence(data.get("evidence", {})),
        interpreter=data.get("interpreter"),
        crates_index=data.get("crates_index"),
    )


def _evidence(data: Mapping[str, Any]) -> Evidence:
    supplier = data.get("supplier", {})
    return Evidence(
        supplier=supplier.get("name"),
        supplier_url=supplier.get("url"),
        namespace=data.get("namespace"),
        builder_id=data.get("builder_id"),
    )


def _chain(name: str, documents: Mapping[str, _Document]) -> list[str]:
    """``name`` and the variants it extends, nearest first (loops are rejected before this)."""
    chain = [name]
    while (base := documents[chain[-1]].data.get("extends")) is not None:
        chain.append(base)
    return chain


def _extended(name: str, documents: Mapping[str, _Document]) -> dict[str, Any]:
    """The variant's data merged over what it extends (loops are rejected before this)."""
    data = documents[name].data
    base = data.get("extends")
    own = {k: v for k, v in data.items() if k != "extends"}
    return _deep_merge(_extended(base, documents), own) if base else own


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; lists and scalars of ``over`` replace ``base``'s."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _freeze(value: Any) -> Any:
    """Read-only views all the way down, so a loaded project cannot be changed by accident."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value
