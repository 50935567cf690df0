"""Rust extensions: crates vendored at lock time from a crates registry, cargo offline at build.

End to end through doit, on a real Rust build backend (setuptools-rust, taken as an
upstream wheel with its dependencies) and the host's Rust toolchain, against a fake
sparse cargo registry on 127.0.0.1 (tests/ecosystem/cargo.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from affineur.pep517 import rust_toolchain
from tests.ecosystem import FakeIndex, IndexFile, wheel_metadata
from tests.ecosystem.cargo import (
    PROBE_VARIABLE,
    FakeCrateRegistry,
    tinyadd,
    write_rust_sdist,
)
from tests.workspace import Workspace, make_workspace, ok

pytestmark = pytest.mark.skipif(rust_toolchain() is None, reason="needs a Rust toolchain")

BACKEND = ("setuptools", "setuptools-rust", "semantic-version")


@pytest.fixture(scope="session")
def rust_backend_wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """setuptools-rust and what it needs, as upstream wheels, through pip's own configuration."""
    dest = tmp_path_factory.mktemp("rust-backend")
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    done = subprocess.run(
        [*pip, f"--dest={dest}", *BACKEND],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"setuptools-rust is not reachable through pip: {done.stderr[-300:]}")
    return sorted(dest.glob("*.whl"))


def _index_file(wheel: Path) -> IndexFile:
    name, version, _, _ = parse_wheel_filename(wheel.name)
    data = wheel.read_bytes()
    return IndexFile(
        canonicalize_name(name), str(version), wheel.name, data, metadata=wheel_metadata(data)
    )


def _rust_workspace(
    tmp_path: Path, index: FakeIndex, registry: FakeCrateRegistry, wheels: list[Path]
) -> tuple[Workspace, dict[str, str]]:
    cargo_home = tmp_path / "cargo-home"
    sdist = write_rust_sdist(tmp_path / "published", registry, cargo_home)
    index.add(IndexFile("rust-adder", "1.0", sdist.name, sdist.read_bytes()))
    index.add(*[_index_file(w) for w in wheels])
    ws = make_workspace(tmp_path / "checkout", index)
    ws.variant(extra=f"crates_index: {json.dumps(registry.url)}\n")
    ws.collection(["rust-adder"])
    for name in BACKEND:
        ws.write(f"overrides/{name}.yaml", "prebuilt: true\n")
    # The build script tries to reach the registry; the build must not get through.
    ws.write("overrides/rust-adder.yaml", f"env:\n  {PROBE_VARIABLE}: '{registry.address}'\n")
    return ws, {"CARGO_HOME": str(cargo_home)}


def _import(wheel: Path, where: Path) -> list[object]:
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(where)
    code = "import json, rust_adder as r; print(json.dumps([r.add(2, 40), r.probe()]))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: list[object] = json.loads(done.stdout)
    return result


@pytest.mark.slow
def test_rust_extension_vendored_at_lock_built_offline_and_imported(
    tmp_path: Path, empty_fake_index: FakeIndex, rust_backend_wheels: list[Path]
) -> None:
    with FakeCrateRegistry() as registry:
        registry.add(tinyadd())
        ws, env = _rust_workspace(tmp_path, empty_fake_index, registry, rust_backend_wheels)
        ok(ws.doit("lock", env=env))
        crates = ws.nodes()["rust-adder==1.0"]["crates"]
        assert crates["packages"] == [
            {"name": "tinyadd", "version": "1.0.0", "sha256": tinyadd().sha256}
        ]
        tree = ws.root / "build/sdists/crates" / crates["sha256"]
        assert (tree / "vendor/tinyadd-1.0.0/src/lib.rs").is_file()
        assert "/api/v1/crates/tinyadd/1.0.0/download" in registry.requests
        asked = len(registry.requests)

        ok(ws.doit(env=env))
        # The build asked the registry nothing, and its own attempt to connect failed.
        assert registry.requests[asked:] == []
        (wheel,) = (ws.root / "dist/demo/cpu/files").glob("rust_adder-*.whl")
        total, probe = _import(wheel, tmp_path / "installed")
        assert total == 42
        assert str(probe).startswith("failed"), probe
        (record,) = [
            json.loads(p.read_text())
            for p in (ws.root / "build/cache").glob("*/record.json")
            if json.loads(p.read_text())["name"] == "rust-adder"
        ]
        toolchain = rust_toolchain()
        assert toolchain is not None
        assert record["rust"] == toolchain.versions()
        assert record["crates"] == {"sha256": crates["sha256"], "count": 1}

        ok(ws.affineur("check"))
        # A changed byte in the vendored tree is caught before cargo reads it.
        lib = tree / "vendor/tinyadd-1.0.0/src/lib.rs"
        lib.write_text(lib.read_text().replace("a + b", "a - b"))
        shutil.rmtree(ws.root / "build/cache")
        failed = ws.doit("build", env=env)
        assert failed.returncode != 0
        assert "the vendored crates hash to" in failed.stdout + failed.stderr
