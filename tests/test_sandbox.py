"""The filesystem sandbox of hook calls: the plan, and a hostile backend through doit.

The backend of ``snoop`` tries, in every hook it runs (discovery and build), to read
the checkout, the home directory and the build cache, and to write outside its work
directory. Under bubblewrap and under the unshare fallback every attempt must fail,
and nothing may appear on the host; with the sandbox relaxed on purpose the same
backend gets through, which shows the probe would notice an escape.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from affineur.pep517 import Confinement, available_sandboxes
from affineur.pep517._sandbox import Plan
from tests.ecosystem import BACKEND_SOURCE, FakeProject
from tests.workspace import Workspace, ok

PROBE = """
import json, os, pathlib, time

READS = {reads!r}
WRITES = {writes!r}
seen = {{}}
for name, path in READS.items():
    try:
        if os.path.isdir(path):
            seen[name] = sorted(os.listdir(path))
        else:
            open(path, "rb").read()
            seen[name] = "read"
    except OSError as exc:
        seen[name] = type(exc).__name__
for name, path in WRITES.items():
    try:
        with open(path, "w") as out:
            out.write("pwned")
        seen["write-" + name] = "written"
    except OSError as exc:
        seen["write-" + name] = type(exc).__name__
here = pathlib.Path.cwd() / "snoop"
if here.is_dir():
    (here / f"seen-{{time.time_ns()}}.json").write_text(json.dumps(seen))
"""


def snoop(root: Path, home: Path, outside: Path) -> FakeProject:
    reads = {
        "checkout": str(root / "collections" / "demo.toml"),
        "checkout-dir": str(root),
        "home": str(home / "secret.txt"),
        "cache": str(root / "build" / "cache"),
        "sdists": str(root / "build" / "sdists"),
    }
    writes = {
        "checkout": str(root / "pwned"),
        "home": str(home / "pwned"),
        "outside": str(outside / "pwned"),
        "system": "/usr/pwned",
        "tmp": f"/tmp/affineur-sandbox-probe-{os.getpid()}",
    }
    probe = PROBE.format(reads=reads, writes=writes)
    return FakeProject(
        "snoop",
        "1.0",
        summary="a backend that tries to leave its sandbox",
        # Imported by the backend itself, so every hook call runs the probe.
        extra_files={
            "_backend/fakebackend.py": BACKEND_SOURCE + "\nimport snoop_probe  # noqa\n",
            "_backend/snoop_probe.py": probe,
        },
    )


def probe_results(wheel: Path) -> list[dict[str, str]]:
    with zipfile.ZipFile(wheel) as zf:
        return [json.loads(zf.read(n)) for n in zf.namelist() if "/seen-" in n]


KINDS = ["bubblewrap", "unshare"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_backend_reaches_nothing_outside_its_sandbox(
    workspace: Workspace, tmp_path: Path, kind: str
) -> None:
    if kind not in available_sandboxes():
        pytest.skip(f"{kind} does not work on this machine")
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.txt").write_text("s3cr3t")
    outside = tmp_path / "outside"
    outside.mkdir()
    assert workspace.index is not None
    workspace.index.add(snoop(workspace.root, home, outside))
    # The whole test folder is made readable on purpose: the checkout and the home
    # directory inside it must still be covered.
    workspace.variant("cpu", f"sandbox: {{kind: {kind}, read_only: [{str(tmp_path)!r}]}}\n")
    workspace.collection(["snoop"])
    env = {"HOME": str(home)}
    result = ok(workspace.doit(env=env))
    assert "Traceback" not in result.stderr

    wheel = next((workspace.root / "dist/demo/cpu/files").glob("snoop-*.whl"))
    seen = probe_results(wheel)
    assert seen, "the probe did not run in the build"
    discovery = list((workspace.root / "build").rglob("seen-*.json"))
    assert discovery, "the probe did not run in discovery"
    keys = {p.name for p in (workspace.root / "build/cache").iterdir()}
    for observed in [*seen, *(json.loads(p.read_text()) for p in discovery)]:
        # A covered folder may show as empty (a mount point's parents at most), never its files.
        assert observed["checkout"] != "read" and observed["home"] != "read", observed
        assert "collections" not in observed["checkout-dir"], observed
        assert not keys & set(observed["cache"]), observed
        assert not {p.name for p in (workspace.root / "build/sdists").iterdir()} & set(
            observed["sdists"]
        ), observed
        for name in ("checkout", "home", "outside", "system"):
            assert observed[f"write-{name}"] != "written", (name, observed)
    for leaked in (workspace.root / "pwned", home / "pwned", outside / "pwned"):
        assert not leaked.exists()
    assert not Path(f"/tmp/affineur-sandbox-probe-{os.getpid()}").exists()
    record: dict[str, Any] = next(
        json.loads(p.read_text()) for p in (workspace.root / "build/cache").glob("*/record.json")
    )
    assert record["sandbox"] == kind and record["network"] is False

    check = workspace.affineur("check")
    assert f"sandbox   cpu: {kind}" in check.stdout, check.stdout


def test_relaxing_the_sandbox_is_explicit_and_the_probe_notices(
    workspace: Workspace, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.txt").write_text("s3cr3t")
    outside = tmp_path / "outside"
    outside.mkdir()
    assert workspace.index is not None
    workspace.index.add(snoop(workspace.root, home, outside))
    workspace.variant("cpu", "sandbox: {kind: none}\n")
    workspace.collection(["snoop"])
    ok(workspace.doit(env={"HOME": str(home)}))
    wheel = next((workspace.root / "dist/demo/cpu/files").glob("snoop-*.whl"))
    (seen, *_) = probe_results(wheel)
    assert seen["checkout"] == "read" and seen["home"] == "read"
    assert "collections" in seen["checkout-dir"]
    assert (outside / "pwned").exists()
    check = workspace.affineur("check")
    assert "sandbox   cpu: none (relaxed in variants/cpu.yaml)" in check.stdout, check.stdout


# --- the plan ------------------------------------------------------------------------------


def test_the_plan_covers_what_is_hidden_before_mounting_inside_it(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    work = checkout / "build" / "work" / "x"
    env = work / "env"
    env.mkdir(parents=True)
    plan = Plan.of(
        Confinement(
            "bubblewrap",
            writable=(work,),
            read_only=(env, tmp_path),
            hidden=(checkout,),
        )
    )
    order = [(kind, dest) for kind, _, dest in plan.entries]
    assert order.index(("ro", str(tmp_path))) < order.index(("tmpfs", str(checkout)))
    assert order.index(("tmpfs", str(checkout))) < order.index(("rw", str(work)))
    assert order.index(("rw", str(work))) < order.index(("ro", str(env)))
    assert ("tmpfs", "/tmp") in order and ("proc", "/proc") in order
    # Nothing of the host's root is mounted but the system directories.
    tops = {Path(dest).parts[1] for kind, _, dest in plan.entries if kind in ("ro", "rw")}
    assert tops <= {"usr", "etc", "opt", "tmp", "root", "home", *Path(tmp_path).parts[1:2]}
    assert not any(dest == "/" for _, _, dest in plan.entries)


def test_a_hidden_folder_outside_every_mount_needs_no_cover(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    plan = Plan.of(Confinement("unshare", writable=(work,), hidden=(tmp_path / "checkout",)))
    assert ("tmpfs", "", str(tmp_path / "checkout")) not in plan.entries
    assert ("rw", str(work), str(work)) in plan.entries


def test_the_unshare_helper_reads_back_the_spec_it_is_given(tmp_path: Path) -> None:
    from affineur.pep517 import _sandbox_helper
    from affineur.pep517._sandbox import helper_argv

    work = tmp_path / "a work dir"
    work.mkdir()
    plan = Plan.of(Confinement("unshare", writable=(work,), network=True))
    command = ["/usr/bin/env", "python3", "-c", "print('a b')", ""]
    argv = helper_argv(plan, command, work, tmp_path / "root")
    # The helper is imported from its folder by a bare interpreter (-I -S), not run
    # as a script, and its arguments follow the code that starts it.
    assert argv[1:4] == ["-I", "-S", "-c"]
    spec = _sandbox_helper.parse_spec(argv[5:])
    assert spec == {
        "parent": os.getpid(),
        "network": True,
        "root": str(tmp_path / "root"),
        "cwd": str(work),
        "plan": [list(entry) for entry in plan.entries],
        "argv": command,
    }
