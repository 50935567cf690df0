"""Writing a command's result: text for people, JSON for programs, atomic files.

Every JSON shape a command prints is defined once in ``schemas/cli-<name>.schema.json``
and checked before it is printed, so a script reading ``--format json`` can rely on
the schema as a contract rather than on whatever the code happened to emit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from affineur.atomic import write_atomic
from affineur.config import validate

__all__ = ["emit", "emit_json"]


def emit(text: str, output: str | None = None) -> None:
    """``text`` to stdout, or atomically into ``output`` (a reader never sees half a file)."""
    if output is None:
        sys.stdout.write(text)
        return
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)
    print(f"wrote {output}")


def emit_json(data: Any, shape: str, output: str | None = None) -> None:
    """Validate ``data`` against ``schemas/cli-<shape>.schema.json``, then print it."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    # Validate what a reader will parse (tuples become arrays), not the Python objects.
    validate(json.loads(text), f"cli-{shape}", file=f"affineur {shape} --format json")
    emit(text, output)
