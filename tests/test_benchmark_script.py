"""The no-op benchmark script runs end to end on a small lock, and its check can fail.

The figures themselves are not asserted (they depend on the machine); what is
asserted is that the script sets up a checkout doit accepts, finds every no-op
run clean, and would notice a task that did run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks import noop
from tests.ecosystem import FakeIndex
from tests.paths import REPO
from tests.test_wheelfile import make_wheel

SCRIPT = REPO / "tests" / "benchmarks" / "noop.py"
PACKAGES = 30


@pytest.mark.slow
def test_noop_benchmark_reports_its_figures(tmp_path: Path) -> None:
    root = tmp_path / "bench"
    argv = ["--packages", str(PACKAGES), "--runs", "1", "--dir", str(root), "--keep"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert re.search(r"^  doit +min \d+\.\d{3} s +median \d+\.\d{3} s", out, re.M), out
    assert re.search(r"^  doit -n 2 +min \d+\.\d{3} s", out, re.M), out
    assert "tasks executed in no-op runs: 0" in out
    tasks = re.search(r"tasks \('doit list --all'\): (\d+)", out)
    assert tasks is not None, out
    # A build and a download task per package, plus lock and publish.
    assert int(tasks.group(1)) >= 2 * PACKAGES + 2
    assert re.search(r"import affineur\.run +\d+\.\d{3} s", out), out

    # The same checkout with its published index gone: the next run must publish
    # again, and the check must say so.
    shutil.rmtree(root / "dist")
    before = noop.Snapshot.take(root)
    result = noop.run(root, "-m", "doit").check()
    signs = noop.executed_tasks(root, result, before)
    assert "publish:bench:cpu" in signs, signs
    assert any(s.startswith("files changed: dist/") for s in signs), signs
    assert not any(s.startswith("build:") for s in signs), signs


# --- the side-by-side benchmark against fromager ------------------------------------

FAKE_FROMAGER = """\
#!{python}
# Stands in for fromager: records how it was called and leaves a wheel where
# 'fromager bootstrap' leaves its wheels.
import pathlib, shutil, sys

args = sys.argv[1:]
if args == ["--version"]:
    print("fromager, version 0.0.fake")
    sys.exit(0)
with open({calls!r}, "a") as log:
    print(pathlib.Path.cwd().name, shutil.which("uv"), *args, file=log)
downloads = pathlib.Path("wheels-repo", "downloads")
downloads.mkdir(parents=True, exist_ok=True)
name = args[-1].replace("-", "_")
(downloads / f"{{name}}-1.0-0-py3-none-any.whl").write_bytes(b"")
"""


def _fake_fromager_venv(root: Path) -> Path:
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for tool, text in (
        ("fromager", FAKE_FROMAGER.format(python=sys.executable, calls=str(root / "calls"))),
        ("uv", "#!/bin/sh\nexit 0\n"),
    ):
        (bin_dir / tool).write_text(text)
        (bin_dir / tool).chmod(0o755)
    return root


SIDE_BY_SIDE = REPO / "tests" / "benchmarks" / "vs_fromager.py"


@pytest.mark.slow
def test_side_by_side_benchmark_alternates_cold_runs_and_prints_ratios(
    tmp_path: Path, fake_index: FakeIndex
) -> None:
    venv = _fake_fromager_venv(tmp_path / "fromager-venv")
    argv = [
        sys.executable, str(SIDE_BY_SIDE), "--fromager-venv", str(venv),
        "--requirement", "fakebuild-core", "--index", fake_index.url, "--no-isolation", "--no-pyc",
        "--pairs", "1", "--noop-runs", "1", "--dir", str(tmp_path / "runs"),
    ]  # fmt: skip
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, check=False)
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"

    # A B from cold, each in its own new directory, then the no-op pair in the same
    # directories. (One pair of each keeps the test short.)
    runs = re.findall(r"^  (pair \d|no-op \d)  (\w+) ", out, re.M)
    assert runs == [
        ("pair 1", "affineur"), ("pair 1", "fromager"),
        ("no-op 1", "affineur"), ("no-op 1", "fromager"),
    ], out  # fmt: skip
    calls = (venv / "calls").read_text().splitlines()
    uv = str(venv / "bin" / "uv")
    assert calls == [f"fromager-1 {uv} --no-network-isolation bootstrap fakebuild-core"] * 2
    # affineur really locked and built the requirement, from its own checkout.
    assert re.search(r"pair 1  affineur +cold .* 1 wheels \(lock \d+\.\d s \+ build", out), out
    for row in ("cold lock + build, wall (median of 1)", "no-op run, wall (median of 1)"):
        assert re.search(rf"^  {re.escape(row)} +\d+\.\d{{3}} +\d+\.\d{{3}} +\d+\.\d{{3}}$",
                         out, re.M), out  # fmt: skip
    assert "wheels built: affineur 1, fromager 1" in out
    assert re.search(r"^machine: .*\d+ cpus", out, re.M), out
    # bubblewrap would hide the hooks' CPU time from the figures.
    assert "affineur's sandbox: unshare" in out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_side_by_side_benchmark_without_fromager_says_how_to_install_it(tmp_path: Path) -> None:
    argv = [sys.executable, str(SIDE_BY_SIDE), "--fromager-venv", str(tmp_path / "none")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: not found: ")
    assert "hint: python3 -m venv" in done.stderr


def test_side_by_side_dry_run_prints_the_plan(tmp_path: Path) -> None:
    venv = _fake_fromager_venv(tmp_path / "fromager-venv")
    argv = [sys.executable, str(SIDE_BY_SIDE), "--fromager-venv", str(venv), "--dry-run"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert "  affineur  python" in done.stdout
    assert "  fromager  fromager --network-isolation bootstrap requests" in done.stdout
    assert "dry run: 3 pairs and 5 no-op pairs" in done.stdout
    assert not (venv / "calls").exists()


# --- the per-build overhead benchmark -------------------------------------------------

# Stands in for flit_core: builds the probe package's wheel with the standard library.
FAKE_FLIT_BUILDAPI = b"""
import base64, hashlib, os, zipfile

def get_requires_for_build_wheel(config_settings=None):
    return []

def _line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\\n"

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = "overhead_probe-1.0.dist-info"
    members = {
        "overhead_probe/__init__.py": open("overhead_probe/__init__.py", "rb").read(),
        f"{info}/METADATA": b"Metadata-Version: 2.1\\nName: overhead-probe\\nVersion: 1.0\\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = "".join(_line(p, d) for p, d in members.items()) + f"{info}/RECORD,,\\n"
    name = "overhead_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as archive:
        for path, data in [*members.items(), (f"{info}/RECORD", record.encode())]:
            archive.writestr(path, data)
    return name
"""


@pytest.mark.slow
def test_build_overhead_benchmark_builds_through_the_builder(tmp_path: Path) -> None:
    backend = make_wheel(
        tmp_path, "flit_core", "99.0", files={"flit_core/buildapi.py": FAKE_FLIT_BUILDAPI}
    )
    argv = [sys.executable, str(REPO / "tests" / "benchmarks" / "build_overhead.py"),
            "--runs", "2", "--backend-wheel", str(backend), "--no-isolation"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert re.search(r"^  build  2: \d+\.\d{3} s wall, \d+\.\d{3} s CPU$", out, re.M), out
    assert re.search(r"^  later builds median: \d+\.\d{3} s wall, \d+\.\d{3} s CPU", out, re.M)
    for phase in ("get the environment", "hook get_requires_for_build_wheel", "hook build_wheel"):
        assert re.search(rf"^    {phase}.* \d+\.\d{{3}} s$", out, re.M), out
    assert "start it and import flit_core.buildapi" in out
