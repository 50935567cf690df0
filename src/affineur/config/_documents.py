"""Config files parsed with the line of every key, so each problem can point at it.

The standard library's TOML parser keeps no positions and PyYAML's loader drops
them, so a :class:`Document` carries a map from key path to line beside the data,
made while parsing. Parsing also refuses what would cost too much or mean
something other than what the user wrote: oversized files, alias bombs, deep
nesting, repeated or non-string keys, infinite and NaN numbers.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from affineur.config._schema import KeyPath, Lines, line_of, schema_problems
from affineur.errors import AffineurError
from affineur.limits import TOO_DEEP, too_deep

__all__ = ["MAX_CONFIG_BYTES", "MAX_YAML_NODES", "Document", "read_all"]

# Collection and variant names end up in doit task names ("build:cpu:requests-2.32.3")
# and directory names, so keep them to characters that are safe in both.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Document:
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


def read_all(
    directory: Path,
    suffix: str,
    schema: str,
    problems: list[AffineurError],
    memo: Path | None = None,
) -> dict[str, Document]:
    documents: dict[str, Document] = {}
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
        documents[path.stem] = Document(
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
