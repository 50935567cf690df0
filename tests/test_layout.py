"""The layout shows the pipeline: no stage imports a later one, no modules import in a
circle, and a stage reaches another only through its public package.

The subpackages run in order config -> index -> pep517 -> lock | build -> run -> cli;
lock and build share pep517 and never import each other, and the top-level modules
(errors, graph, progress ...) import no stage. Imports are read from the source,
including those inside functions and under ``TYPE_CHECKING``, so a lazy import
cannot hide an upward one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.paths import REPO

SRC = REPO / "src"
STAGES = ("config", "index", "pep517", "lock", "build", "run", "cli")
# lock and build are both stage 2 of 3 for this rule: neither may import the other.
RANK = {"config": 0, "index": 1, "pep517": 2, "lock": 3, "build": 3, "run": 4, "cli": 5}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "affineur").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(tree: ast.AST, *, runtime_top_level: bool) -> Iterator[str]:
    """The affineur modules a module imports (all of them, or those its import runs)."""

    def visit(node: ast.AST) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if runtime_top_level:
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
            if isinstance(child, ast.Import):
                yield from (alias.name for alias in child.names if alias.name in MODULES)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module in MODULES:
                    yield child.module
                for alias in child.names:
                    if f"{child.module}.{alias.name}" in MODULES:
                        yield f"{child.module}.{alias.name}"
            else:
                yield from visit(child)

    yield from visit(tree)


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_no_module_imports_a_later_stage() -> None:
    wrong = []
    for module, path in MODULES.items():
        here = _stage(module)
        for target in set(_imports(ast.parse(path.read_text()), runtime_top_level=False)):
            there = _stage(target)
            if there is None or there == here:
                continue
            if here is None or RANK[there] >= RANK[here]:
                wrong.append(f"{module} imports {target}")
    assert sorted(wrong) == []


def _private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split(".")[1:])


def test_a_stage_imports_another_only_through_its_public_package() -> None:
    # affineur.build, not affineur.build._builder: the private modules behind a
    # package's __init__ may move without its users noticing.
    wrong = []
    for module, path in MODULES.items():
        here = _stage(module)
        for target in set(_imports(ast.parse(path.read_text()), runtime_top_level=False)):
            there = _stage(target)
            if there is not None and there != here and _private(target):
                wrong.append(f"{module} imports {target}")
    assert sorted(wrong) == []


def test_no_import_circle() -> None:
    # What importing a module runs: its top-level imports, not those in functions
    # or under TYPE_CHECKING.
    graph = {
        module: set(_imports(ast.parse(path.read_text()), runtime_top_level=True)) - {module}
        for module, path in MODULES.items()
    }
    circles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                walk(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module)
    assert circles == []


def test_the_rules_see_an_import_inside_a_function() -> None:
    # The walk above must find imports wherever they are written.
    source = "def f():\n    from affineur.run import open_checkout\n"
    assert list(_imports(ast.parse(source), runtime_top_level=False)) == ["affineur.run"]
    assert list(_imports(ast.parse(source), runtime_top_level=True)) == []
