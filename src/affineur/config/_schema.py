"""JSON Schema validation that reports every problem at once, located and explained.

jsonschema's own messages ("Additional properties are not allowed ('x' was
unexpected)") talk about the schema, not about the user's file. Here every
problem becomes an :class:`~affineur.errors.AffineurError` naming the file, the
key path, the line when the caller knows it, what was expected, and, for a
misspelt key or value, the name the user probably meant.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affineur.atomic import write_atomic
from affineur.errors import AffineurError

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError
    from referencing import Registry

# jsonschema is imported where a document is checked, not here: importing it and
# building its registry costs more than a whole no-op run has to spend, and a run
# whose config did not change checks nothing (see ``memo`` in schema_problems).

__all__ = [
    "KeyPath",
    "Lines",
    "did_you_mean",
    "line_of",
    "load_schema",
    "raise_problems",
    "schema_problems",
    "schemas_dir",
    "validate",
]

KeyPath = tuple[str | int, ...]
Lines = Mapping[KeyPath, int]
"""Where each key path of a document starts (1-based line), as far as the format tells."""

_SUFFIX = ".schema.json"


def schemas_dir() -> Path:
    """The directory holding the ``*.schema.json`` files.

    A wheel carries them inside the package (pyproject force-includes them); a
    source checkout or editable install keeps them at the repository root.
    """
    packaged = Path(__file__).parents[1] / "schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "schemas"


@functools.cache
def load_schema(name: str) -> Mapping[str, Any]:
    """The schema ``schemas/<name>.schema.json``, parsed once per process.

    Not checked against the JSON Schema meta-schema here: that costs as much as a
    no-op run and the schemas ship with the code; the test suite checks them.
    """
    path = schemas_dir() / f"{name}{_SUFFIX}"
    try:
        schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        # A broken or missing schema is a packaging bug, not the user's mistake.
        raise AffineurError(
            f"cannot load schema {name!r}: {exc}", file=str(path), stage="internal"
        ) from exc
    return schema


@functools.cache
def _registry() -> Registry:
    """Every schema by its ``$id``, so one schema can ``$ref`` another's definitions."""
    from referencing import Registry, Resource

    resources = []
    for path in sorted(schemas_dir().glob(f"*{_SUFFIX}")):
        schema = load_schema(path.name.removesuffix(_SUFFIX))
        if "$id" in schema:
            resources.append((str(schema["$id"]), Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def _validator_class() -> type[Draft202012Validator]:
    """jsonschema's validator, imported without its IRI format checker.

    Importing jsonschema registers its format checkers, and where rfc3987-syntax is
    installed (jsonschema's ``format-nongpl`` extra, which CycloneDX's validation
    extra pulls in) that compiles several Earley grammars: about 3 s of CPU in every
    process that checks a document, ten times what the rest of a no-op run costs.
    affineur validates without a format checker, so that module is hidden for the
    length of the import only; importing it later works as usual.
    """
    hide = "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules
    if hide:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]
    try:
        from jsonschema import Draft202012Validator
    finally:
        if hide:
            del sys.modules["rfc3987_syntax"]
    validator: type[Draft202012Validator] = Draft202012Validator
    return validator


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    return _validator_class()(load_schema(name), registry=_registry())


@functools.cache
def _schemas_digest() -> bytes:
    """One hash of every schema: a ``$ref`` makes any of them part of each check."""
    digest = hashlib.sha256()
    for path in sorted(schemas_dir().glob(f"*{_SUFFIX}")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.digest()


def _memo_marker(memo: Path, data: object, schema_name: str) -> Path | None:
    try:
        text = json.dumps(data, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return None  # not plain JSON data (a YAML date): always checked
    key = hashlib.sha256(_schemas_digest() + schema_name.encode() + b"\0" + text.encode())
    return memo / key.hexdigest()


def line_of(lines: Lines | None, key_path: Sequence[str | int]) -> int | None:
    """The line of ``key_path``, or of its nearest ancestor the format located."""
    if not lines:
        return None
    path = tuple(key_path)
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        path = path[:-1]


def did_you_mean(word: object, choices: Iterable[str]) -> str | None:
    """``did you mean 'x'?`` for the closest choice, if one is close enough."""
    if not isinstance(word, str):
        return None
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def schema_problems(
    data: object,
    schema_name: str,
    *,
    file: str,
    lines: Lines | None = None,
    memo: Path | None = None,
) -> list[AffineurError]:
    """Every way ``data`` breaks ``schemas/<schema_name>.schema.json``, in document order.

    With ``memo`` (a folder), data that passed once is remembered by its hash and
    that of the schemas, so checking it again costs a file lookup.
    """
    marker = None if memo is None else _memo_marker(memo, data, schema_name)
    if marker is not None and marker.exists():
        return []
    problems = _problems(data, schema_name, file=file, lines=lines)
    if marker is not None and not problems:
        # A read-only checkout only loses the shortcut.
        with contextlib.suppress(OSError):
            write_atomic(marker, b"")
    return problems


def _problems(
    data: object, schema_name: str, *, file: str, lines: Lines | None
) -> list[AffineurError]:
    problems: list[AffineurError] = []
    seen: set[tuple[KeyPath, str]] = set()
    for error in _validator(schema_name).iter_errors(data):
        path: KeyPath = tuple(error.absolute_path)
        for key_path, message, hint in _explain(error, path):
            # jsonschema reports some keywords once per offending member while
            # the explanation already covers all of them ("required").
            if (key_path, message) in seen:
                continue
            seen.add((key_path, message))
            problems.append(
                AffineurError(
                    message,
                    hint=hint,
                    file=file,
                    key_path=key_path,
                    line=line_of(lines, key_path),
                    stage="config",
                )
            )
    problems.sort(key=lambda p: (p.line or 0, [str(k) for k in p.key_path]))
    return problems


def validate(data: object, schema_name: str, *, file: str, lines: Lines | None = None) -> None:
    """Raise one :class:`AffineurError` listing every schema violation of ``data``."""
    raise_problems(schema_problems(data, schema_name, file=file, lines=lines))


def raise_problems(problems: Sequence[AffineurError]) -> None:
    """Raise nothing, the single problem, or one error naming the first with all as causes.

    Users fix config files in one pass when they see every problem at once; the
    first one stays in the main fields so the one-line summary points somewhere.
    """
    if not problems:
        return
    if len(problems) == 1:
        raise problems[0]
    first = problems[0]
    raise AffineurError(
        f"{first.message} (and {len(problems) - 1} more problems)",
        hint=first.hint,
        file=first.file,
        key_path=first.key_path,
        line=first.line,
        package=first.package,
        version=first.version,
        stage=first.stage,
        causes=tuple(_cause_line(p) for p in problems),
    )


def _cause_line(problem: AffineurError) -> str:
    return f"{problem.one_line()} ({problem.hint})" if problem.hint else problem.one_line()


_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "null": "nothing (null)",
}


def _json_type(value: object) -> str:
    """The JSON Schema type name of a loaded value, as the user would call it."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"{value!r} ({type(value).__name__})"


def _describe(schema: object) -> str:
    """What a subschema accepts, in words, for "expected ..." messages."""
    if not isinstance(schema, Mapping):
        return "a valid value"
    if "description" in schema and "type" not in schema and "enum" not in schema:
        return str(schema["description"])
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    if "anyOf" in schema or "oneOf" in schema:
        return " or ".join(_describe(s) for s in schema.get("anyOf", schema.get("oneOf", [])))
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        item = _describe(schema["items"]).removeprefix("a ").removeprefix("an ")
        return f"a list of {item}s"
    if isinstance(kind, str):
        return _TYPE_NAMES.get(kind, kind)
    if isinstance(kind, list):
        return " or ".join(_TYPE_NAMES.get(str(k), str(k)) for k in kind)
    return str(schema.get("description", "a valid value"))


def _explain(error: ValidationError, path: KeyPath) -> list[tuple[KeyPath, str, str | None]]:
    """(key path, message, hint) for one jsonschema error; one entry per unknown key."""
    kind = error.validator
    value = error.validator_value
    instance = error.instance
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if kind == "additionalProperties" and isinstance(instance, Mapping):
        allowed = set(schema.get("properties", {}))
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        # Keys a pattern admits are not unknown: one bad lock node key must not
        # make every good one look wrong too.
        unknown = [
            k for k in instance if k not in allowed and not any(p.search(str(k)) for p in patterns)
        ]
        hint_all = "allowed keys: " + ", ".join(sorted(allowed)) if allowed else None
        if patterns:
            shown = " or ".join(p.pattern for p in patterns)
            return [((*path, k), f"key {k!r} does not match {shown}", None) for k in unknown]
        return [
            ((*path, k), f"unknown key {k!r}", did_you_mean(k, allowed) or hint_all)
            for k in unknown
        ]
    if kind == "required" and isinstance(instance, Mapping):
        return [(path, f"missing required key {k!r}", None) for k in value if k not in instance]
    if kind == "type":
        expected = _describe({"type": value})
        hint = None
        if (
            value == "string"
            and isinstance(instance, int | float)
            and not isinstance(instance, bool)
        ):
            hint = "quote the value so it is read as a string"
        return [(path, f"expected {expected}, got {_json_type(instance)}", hint)]
    if kind in ("enum", "const"):
        choices = value if kind == "enum" else [value]
        expected = "one of " + ", ".join(repr(v) for v in choices)
        hint = did_you_mean(instance, [str(c) for c in choices])
        return [(path, f"expected {expected}, got {_json_type(instance)}", hint)]
    if kind in ("minimum", "exclusiveMinimum"):
        op = ">=" if kind == "minimum" else ">"
        return [(path, f"expected a number {op} {value}, got {_json_type(instance)}", None)]
    if kind == "minItems":
        return [(path, f"expected at least {value} item(s), got {len(instance)}", None)]
    if kind == "minLength":
        return [(path, "expected a non-empty string", None)]
    if kind == "uniqueItems":
        return [(path, "expected no duplicate items", None)]
    if kind == "pattern":
        expected = schema.get("description", f"a string matching {value}")
        return [(path, f"expected {expected}, got {_json_type(instance)}", None)]
    if kind in ("anyOf", "oneOf"):
        return [(path, f"expected {_describe(schema)}, got {_json_type(instance)}", None)]
    return [(path, error.message, None)]
