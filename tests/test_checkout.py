"""The checkout over data written in the test: locks from tests/lockfactory, no index, no doit.

What the end-to-end runs show through ``doit`` (which builds go stale, which locks
are redone), checked here on the :class:`Checkout` itself, in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

from affineur.config import load_project
from affineur.lock import input_hash
from affineur.progress import LockStale, RecordingReporter
from affineur.run import Checkout, open_checkout
from tests.lockfactory import graph, pkg, web_graph, write_lock, write_project


def checkout(root: Path, reporter: RecordingReporter | None = None) -> Checkout:
    co = open_checkout(root, reporter=reporter or RecordingReporter())
    # The host's compilers are not under test: every key is computed without them.
    co.host_tools = dict
    return co


def keys(root: Path) -> dict[str, str]:
    return {str(k): str(v) for k, v in checkout(root).locked_variant("web", "cpu").keys.items()}


def test_a_tool_setting_changes_the_keys_of_what_was_built_with_it_and_no_others(
    tmp_path: Path,
) -> None:
    write_project(tmp_path, [web_graph()])
    before = keys(tmp_path)
    assert len(set(before.values())) == len(before), "every package has its own key"

    (tmp_path / "overrides/flit-core.yaml").write_text("env: {FLIT_TUNING: '1'}\n")
    after = keys(tmp_path)
    # flit-core builds idna and packaging; urllib3's build environment holds
    # packaging. requests only installs idna and urllib3, and hatchling only
    # installs packaging: installing is not building with, so their keys stay.
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"flit-core==3.9.0", "idna==3.7", "packaging==24.1", "urllib3==2.2.1"}


def test_a_comment_edit_keeps_every_key(tmp_path: Path) -> None:
    write_project(tmp_path, [web_graph()], files={"overrides/idna.yaml": "env: {A: '1'}\n"})
    before = keys(tmp_path)
    (tmp_path / "overrides/idna.yaml").write_text("# tuned for the web team\nenv:\n  A: '1'\n")
    assert keys(tmp_path) == before


def test_only_stale_locks_are_locked_again_and_each_is_reported(tmp_path: Path) -> None:
    files = {
        "collections/tools.toml": 'description = "tools"\nvariants = ["cpu"]\n'
        'requirements = ["flit-core"]\n'
    }
    write_project(tmp_path, files=files)
    project = load_project(tmp_path)
    variant = project.variants["cpu"]
    fresh = input_hash(project, project.collections["tools"], variant)
    write_lock(tmp_path, graph(pkg("flit-core==3.9.0"), top=["flit-core==3.9.0"],
                               collection="tools", input_hash=fresh))  # fmt: skip
    write_lock(tmp_path, web_graph())  # its recorded input hash is not the files'

    reporter = RecordingReporter()
    co = checkout(tmp_path, reporter)
    locked: list[tuple[str, str]] = []

    def lock(collection: str, variant: str, upgrade: object = frozenset()) -> Path:
        locked.append((collection, variant))
        return co.lock_paths(collection, variant).graph

    co.lock = lock  # type: ignore[method-assign]  # locking (the network stage) is not under test
    co.relock_stale()
    assert locked == [("web", "cpu")]
    assert reporter.of(LockStale) == [LockStale("web", "cpu")]
