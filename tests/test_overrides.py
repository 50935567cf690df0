"""Per-package overrides and variants, end to end through `doit lock` and `doit build`."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.ecosystem import FakeProject, IndexFile
from tests.workspace import Workspace, ok

TEXT_PATCH = """\
--- a/env_reader/__init__.py
+++ b/env_reader/__init__.py
@@ -0,0 +1 @@
+PATCHED = "yes"
"""


def wheel_of(ws: Workspace, name: str, collection: str = "demo", variant: str = "cpu") -> Path:
    files = sorted((ws.root / "dist" / collection / variant / "files").glob(f"{name}-*.whl"))
    assert len(files) == 1, files
    return files[0]


def build_env_json(wheel: Path, package: str) -> dict[str, Any]:
    with zipfile.ZipFile(wheel) as zf:
        data: dict[str, Any] = json.loads(zf.read(f"{package}/_build_env.json"))
    return data


def test_env_is_templated_and_merged_variant_then_package(workspace: Workspace) -> None:
    workspace.variant("cpu", "env: {AFFINEUR_TEST_FLAG: from-variant, BASE: base}\n")
    workspace.write(
        "overrides/env-reader.yaml", "env:\n  AFFINEUR_TEST_FLAG: '${BASE}-${version}'\n"
    )
    workspace.collection(["env-reader"])
    ok(workspace.doit())
    seen = build_env_json(wheel_of(workspace, "env_reader"), "env_reader")
    assert seen["env"] == {"AFFINEUR_TEST_FLAG": "base-1.0"}
    assert seen["origin"] == "built"


def test_env_is_expanded_for_discovery_hooks_too(workspace: Workspace) -> None:
    # The lock runs the package's hooks with the same env as its build, so a bad
    # reference stops the lock rather than reaching a backend as literal text.
    workspace.write("overrides/dyn-requires.yaml", "env: {X: '${NO_SUCH_VARIABLE}'}\n")
    workspace.collection(["dyn-requires"])
    result = workspace.cli("lock")
    assert result.returncode == 2
    assert "env.X: dyn-requires==1.0: unknown variable ${NO_SUCH_VARIABLE}" in result.stderr
    assert "Traceback" not in result.stderr


def test_secrets_in_the_parent_environment_never_reach_a_backend(workspace: Workspace) -> None:
    workspace.index.add(FakeProject("token-reader", "1.0", read_env=("MY_API_TOKEN", "PATH")))
    workspace.collection(["token-reader"])
    ok(workspace.doit(env={"MY_API_TOKEN": "s3cret"}))
    seen = build_env_json(wheel_of(workspace, "token_reader"), "token_reader")
    assert seen["env"]["MY_API_TOKEN"] is None
    assert seen["env"]["PATH"]


def test_patches_apply_in_name_order_and_are_part_of_the_build_key(workspace: Workspace) -> None:
    workspace.collection(["env-reader"])
    workspace.write("overrides/patches/env-reader/0001-mark.patch", TEXT_PATCH)
    ok(workspace.doit())
    with zipfile.ZipFile(wheel_of(workspace, "env_reader")) as zf:
        assert 'PATCHED = "yes"' in zf.read("env_reader/__init__.py").decode()
    ok(workspace.doit())
    assert workspace.executed() == []
    workspace.write(
        "overrides/patches/env-reader/0001-mark.patch", TEXT_PATCH.replace('"yes"', '"again"')
    )
    ok(workspace.doit())
    assert workspace.executed() == ["build:cpu:env-reader-1.0"]


def test_a_patch_that_does_not_apply_names_the_patch_and_the_hunk(workspace: Workspace) -> None:
    workspace.collection(["env-reader"])
    bad = (
        "--- a/env_reader/__init__.py\n+++ b/env_reader/__init__.py\n"
        "@@ -1,1 +1,2 @@\n this line is not in the file\n+PATCHED = 1\n"
    )
    workspace.write("overrides/patches/env-reader-1.0/cpu/0002-bad.patch", bad)
    result = workspace.doit()
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "0002-bad.patch does not apply" in output
    assert "Hunk #1 FAILED" in output
    assert "Traceback" not in output


def test_config_settings_reach_every_hook(workspace: Workspace) -> None:
    workspace.write("overrides/env-reader.yaml", "config_settings: {--mode: fast}\n")
    workspace.collection(["env-reader"])
    ok(workspace.doit())
    assert build_env_json(wheel_of(workspace, "env_reader"), "env_reader")["config_settings"] == {
        "--mode": "fast"
    }


@pytest.mark.slow
def test_build_requires_override_reaches_the_lock_and_the_build(workspace: Workspace) -> None:
    workspace.write(
        "overrides/lib-c.yaml",
        "build_requires: {add: [meta-dep>=1]}\n",
    )
    workspace.collection(["lib-c"])
    ok(workspace.doit())
    node = workspace.nodes()["lib-c==1.0"]
    assert "meta-dep==1.0" in node["build_env"]
    assert {"key": "meta-dep==1.0", "req": "meta-dep>=1", "req_type": "build-system"} in node[
        "edges"
    ]


def test_prebuilt_breaks_a_build_cycle(workspace: Workspace) -> None:
    workspace.write("overrides/cycle-b.yaml", "prebuilt: true\n")
    workspace.collection(["cycle-a"])
    ok(workspace.doit())
    nodes = workspace.nodes()
    assert nodes["cycle-b==1.0"]["prebuilt"] is True
    assert nodes["cycle-b==1.0"]["wheel"]["filename"] == "cycle_b-1.0-py3-none-any.whl"
    assert nodes["cycle-a==1.0"]["build_env"] == ["cycle-b==1.0"]
    assert build_env_json(wheel_of(workspace, "cycle_b"), "cycle_b")["origin"] == "upstream"
    assert build_env_json(wheel_of(workspace, "cycle_a"), "cycle_a")["origin"] == "built"
    rows = json.loads((workspace.root / "build/reports/summary.json").read_text())["packages"]
    assert {r["package"]: r["prebuilt"] for r in rows} == {"cycle-a": False, "cycle-b": True}


def test_constraints_in_an_override_apply_to_the_whole_lock(workspace: Workspace) -> None:
    workspace.write("overrides/conflict-x.yaml", "constraints: ['shared<2']\n")
    workspace.collection(["shared"])
    ok(workspace.doit("lock"))
    assert "shared==1.0" in workspace.nodes()


@pytest.mark.slow
def test_changelog_sets_the_build_number(workspace: Workspace) -> None:
    workspace.collection(["lib-fast"])
    ok(workspace.doit())
    workspace.write(
        "overrides/lib-fast.yaml", "changelog: {'1.0': [rebuilt with the fixed compiler]}\n"
    )
    ok(workspace.doit())
    assert workspace.executed() == ["build:cpu:lib-fast-1.0"]
    assert wheel_of(workspace, "lib_fast").name == "lib_fast-1.0-1-py3-none-any.whl"


def test_build_dir_finds_a_project_in_a_subdirectory(workspace: Workspace, tmp_path: Path) -> None:
    project = FakeProject("nested", "1.0")
    source = project.write_source_tree(tmp_path / "src")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=f"nested-1.0/python/{path.relative_to(source)}", recursive=False)
        info = tarfile.TarInfo("nested-1.0/PKG-INFO")
        pkg_info = b"Metadata-Version: 2.2\nName: nested\nVersion: 1.0\n"
        info.size = len(pkg_info)
        tar.addfile(info, io.BytesIO(pkg_info))
    workspace.index.add(IndexFile("nested", "1.0", "nested-1.0.tar.gz", buffer.getvalue()))
    workspace.collection(["nested"])
    workspace.write("overrides/nested.yaml", "build_dir: python\n")
    ok(workspace.doit())
    assert wheel_of(workspace, "nested").name == "nested-1.0-py3-none-any.whl"


def test_download_source_fetches_an_sdist_the_index_lacks(
    workspace: Workspace, tmp_path: Path
) -> None:
    from tests.ecosystem import build_release

    project = FakeProject("offsite-lib", "1.0", publish_wheel=True)
    release = build_release(project, tmp_path / "rel")
    assert release.wheel is not None and release.sdist is not None
    workspace.index.add(
        IndexFile("offsite-lib", "1.0", release.wheel.name, release.wheel.read_bytes())
    )
    # The sdist is published under another project's files, i.e. somewhere else.
    workspace.index.add(
        IndexFile("elsewhere", "1.0", release.sdist.name, release.sdist.read_bytes())
    )
    url = workspace.index.file_url(release.sdist.name).replace("offsite_lib", "offsite_lib")
    workspace.write("overrides/offsite-lib.yaml", f"download_source: '{url}'\n")
    workspace.collection(["offsite-lib"])
    ok(workspace.doit())
    node = workspace.nodes()["offsite-lib==1.0"]
    assert node["sdist"]["filename"] == "offsite_lib-1.0.tar.gz"
    assert build_env_json(wheel_of(workspace, "offsite_lib"), "offsite_lib")["origin"] == "built"


def test_variant_extends_and_settings_command(workspace: Workspace) -> None:
    workspace.variant("cpu", "env: {A: cpu}\nresources: {cpu: 2}\n")
    workspace.write(
        "variants/cuda.yaml",
        "description: cuda\nextends: cpu\nenv: {B: cuda}\nresources: {gpu: 1}\n",
    )
    workspace.write(
        "overrides/env-reader.yaml",
        "env: {C: '${version}'}\n"
        "variants:\n  cuda: {env: {D: only-cuda}}\n"
        "versions:\n  '>=1': {timeout: 60}\n",
    )
    workspace.collection(["env-reader"], variants=("cpu", "cuda"))
    shown = json.loads(
        ok(
            workspace.cli(
                "settings",
                "env-reader",
                "--variant",
                "cuda",
                "--version",
                "1.0",
                "--format",
                "json",
            )
        ).stdout
    )
    (entry,) = shown
    assert entry["variant"] == "cuda"
    assert entry["settings"]["env"] == {
        "A": "cpu",
        "B": "cuda",
        "C": "${version}",
        "D": "only-cuda",
    }
    assert entry["settings"]["timeout"] == 60
    ok(workspace.doit())
    # Two variants: two locks with the same versions, two indexes.
    assert workspace.nodes(variant="cpu").keys() == workspace.nodes(variant="cuda").keys()
    assert wheel_of(workspace, "env_reader", variant="cuda").exists()
    assert wheel_of(workspace, "env_reader", variant="cpu").exists()
