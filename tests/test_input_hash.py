"""A lock's input hash covers meaning, not bytes: what stales a lock and what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from affineur.config import load_project
from affineur.lock import check_project, input_hash
from tests.lockfactory import web_graph, write_lock, write_project
from tests.test_check import fresh

OVERRIDE = """\
# hatchling: pinned because 1.26 broke our plugin
constraints: ["hatchling<1.26"]
env: {HATCH_VERBOSE: "1"}
versions:
  ">=1.25":
    prebuilt: false
"""


def digest(root: Path) -> str:
    project = load_project(root)
    return input_hash(project, project.collections["web"], project.variants["cpu"])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_project(tmp_path, files={"overrides/hatchling.yaml": OVERRIDE})


def edit(root: Path, rel: str, text: str) -> None:
    (root / rel).write_text(text)


SAME_MEANING = {
    "a comment and new formatting of the collection": (
        "collections/web.toml",
        'requirements = [ "idna" , "requests >= 2" ]   # reordered, respaced\n'
        "# which variants to build\n"
        'variants = [ "cpu" ]\n'
        'description = "web things, described differently"\n',
    ),
    "a comment and key order in the variant": (
        "variants/cpu.yaml",
        "# the index is only reachable from CI\n"
        'indexes: ["http://127.0.0.1:9/simple"]\n'
        "platform: {platform_machine: x86_64, sys_platform: linux}\n"
        'python: "3.11"\n'
        "description: CPU builds (reworded)\n",
    ),
    "build-only settings in an override": (
        "overrides/hatchling.yaml",
        OVERRIDE.replace("# hatchling: pinned because 1.26 broke our plugin\n", "")
        + "resources: {cpu: 4, memory_gb: 16}\n"
        + "timeout: 900\n"
        + "changelog: {'1.25.0': [rebuilt with the platform compiler]}\n"
        + "variants: {cpu: {env: {CC: gcc-14}}}\n",
    ),
    "a patch file": ("overrides/patches/hatchling/0001-fix.patch", "--- a\n+++ b\n"),
    "an override of build-only settings for another package": (
        "overrides/idna.yaml",
        "env: {X: '1'}\nresources: {exclusive: true}\n",
    ),
    "variant settings that only affect building": (
        "variants/cpu.yaml",
        'description: CPU-only builds\npython: "3.11"\n'
        "platform: {sys_platform: linux, platform_machine: x86_64}\n"
        'indexes: ["http://127.0.0.1:9/simple"]\n'
        "env: {MAKEFLAGS: -j2}\nresources: {cpu: 8}\nnetwork_isolation: false\ntimeout: 60\n",
    ),
}


@pytest.mark.parametrize("rel, text", list(SAME_MEANING.values()), ids=list(SAME_MEANING))
def test_edits_that_cannot_change_a_lock_keep_it_fresh(root: Path, rel: str, text: str) -> None:
    before = digest(root)
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    assert digest(root) == before


NEW_MEANING = {
    "a requirement": ("collections/web.toml", ('"idna",', '"idna<3.10",')),
    "a constraint in an override": ("overrides/hatchling.yaml", ("<1.26", "<1.25")),
    "prebuilt": ("overrides/hatchling.yaml", ("prebuilt: false", "prebuilt: true")),
    "the target": ("variants/cpu.yaml", ("x86_64", "aarch64")),
    "the python": ("variants/cpu.yaml", ('"3.11"', '"3.12"')),
    "the discovery mode": ("variants/cpu.yaml", ("python:", "discovery: source\npython:")),
    "the crates index": (
        "variants/cpu.yaml",
        ("python:", 'crates_index: "sparse+http://127.0.0.1:9/crates/"\npython:'),
    ),
}


@pytest.mark.parametrize("rel, change", list(NEW_MEANING.values()), ids=list(NEW_MEANING))
def test_edits_that_can_change_a_lock_stale_it(
    root: Path, rel: str, change: tuple[str, str]
) -> None:
    before = digest(root)
    path = root / rel
    assert change[0] in path.read_text()
    path.write_text(path.read_text().replace(*change))
    assert digest(root) != before


def test_check_stays_green_after_a_comment_edit(root: Path) -> None:
    write_lock(root, fresh(root, web_graph()))
    assert check_project(root).ok
    path = root / "collections" / "web.toml"
    path.write_text("# reviewed by the platform team\n" + path.read_text().replace("  #", "#"))
    assert check_project(root).ok
