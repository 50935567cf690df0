"""What a run loads: public packages load their modules on use, and a no-op run loads little.

A no-op ``doit`` is promised in a fraction of a second, and most of its time is
imports; these tests keep the heavy modules (the builder, the locker, the index
client, rich, jsonschema, installer, the SBOM library) off its path.
"""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

from tests.benchmarks import noop
from tests.paths import REPO

PACKAGES = ("build", "config", "index", "lock", "pep517")

# Loaded only by what a no-op never does: build, lock, fetch, publish, draw a terminal.
HEAVY = (
    "affineur.build._builder",
    "affineur.build._job",
    "affineur.lock._locker",
    "affineur.lock._resolver",
    "affineur.pep517._environment",
    "affineur.pep517._hooks",
    "affineur.index._client",
    "affineur.index._download",
    "affineur.index._http",
    "affineur.index._pages",
    "affineur.run._verify",
    "cyclonedx",
    "installer",
    "jsonschema",
    "requests",
    "resolvelib",
    "rich",
    "tomlkit",
)


def _type_checking_imports(init: Path) -> dict[str, str]:
    """name -> private module, as the ``if TYPE_CHECKING:`` block of ``init`` imports them."""
    names: dict[str, str] = {}
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module is not None
                for alias in stmt.names:
                    names[alias.asname or alias.name] = stmt.module.rsplit(".", 1)[1]
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_a_public_package_names_each_module_once_and_every_name_resolves(package: str) -> None:
    module = importlib.import_module(f"affineur.{package}")
    typed = _type_checking_imports(REPO / "src" / "affineur" / package / "__init__.py")
    # What mypy sees, what the package exports and what it loads on use are one list.
    assert sorted(typed) == sorted(module.__all__)
    for name, private in typed.items():
        value = getattr(module, name)
        assert value is getattr(importlib.import_module(f"affineur.{package}.{private}"), name)
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        _ = module.nothing_here


# doit as its console script runs it, writing at exit every module the run loaded.
# ``-X importtime`` would not do: it leaves out what importlib.import_module loads,
# which is how the public packages load their modules on first use.
_DOIT_LISTING_MODULES = """
import atexit, json, runpy, sys
listing = sys.argv.pop(1)
atexit.register(lambda: open(listing, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "doit"
runpy.run_module("doit", run_name="__main__", alter_sys=True)
"""


def _doit_loads(root: Path, listing: Path) -> tuple[noop.Run, set[str]]:
    result = noop.run(root, "-c", _DOIT_LISTING_MODULES, str(listing)).check()
    return result, set(json.loads(listing.read_text()))


def test_the_module_listing_sees_what_a_lazy_name_loads(tmp_path: Path) -> None:
    script = tmp_path / "lazy.py"
    script.write_text("import affineur.build\naffineur.build.Builder\n")
    listing = tmp_path / "modules.json"
    code = _DOIT_LISTING_MODULES.replace('"doit"', f'"{script.stem}"')
    noop.run(tmp_path, "-c", code, str(listing)).check()
    assert "affineur.build._builder" in json.loads(listing.read_text())


def test_a_no_op_run_loads_neither_the_builder_nor_the_locker(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    noop.write_checkout(root, noop.Shape.for_size(16, overridden=2))
    noop.fill_cache(root)
    noop.run(root, "-m", "doit").check()  # publishes the index: the one thing left to do

    # The long way first: without the no-op stamp, the tasks load and are checked.
    (root / ".affineur" / "noop.json").unlink(missing_ok=True)
    before = noop.Snapshot.take(root)
    result, loaded = _doit_loads(root, tmp_path / "long.json")
    assert noop.executed_tasks(root, result, before) == []
    assert "affineur.run._checkout" in loaded  # the listing is read right
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == []

    # Then the stamp that run wrote answers: not even the config or the locks are read.
    _, loaded = _doit_loads(root, tmp_path / "stamp.json")
    assert "affineur.run._noop" in loaded
    light = ("affineur.run._checkout", "affineur.graph", "affineur.config._project", "yaml")
    assert sorted(loaded & {*HEAVY, *light}) == []
