"""Rust extensions: crates vendored at lock time from a crates registry, cargo offline at build.

End to end through doit, on a real Rust build backend (setuptools-rust, taken as an
upstream wheel with its dependencies) and the host's Rust toolchain, against a fake
sparse cargo registry on 127.0.0.1 (tests/ecosystem/cargo.py).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from affineur import graph as g
from affineur.build import HostTools
from affineur.errors import AffineurError
from affineur.lock import parse_lock
from affineur.pep517 import cargo_home, rust_toolchain, tree_hash
from tests.ecosystem import FakeIndex, IndexFile, wheel_metadata
from tests.ecosystem.cargo import (
    PROBE_VARIABLE,
    FakeCrateRegistry,
    tinyadd,
    write_rust_sdist,
)
from tests.lockfactory import pkg
from tests.workspace import Workspace, make_workspace, ok

needs_rust = pytest.mark.skipif(rust_toolchain() is None, reason="needs a Rust toolchain")

BACKEND = ("setuptools", "setuptools-rust", "semantic-version")


def _index_file(wheel: Path) -> IndexFile:
    name, version, _, _ = parse_wheel_filename(wheel.name)
    data = wheel.read_bytes()
    return IndexFile(
        canonicalize_name(name), str(version), wheel.name, data, metadata=wheel_metadata(data)
    )


def rust_workspace(
    tmp_path: Path, index: FakeIndex, registry: FakeCrateRegistry, wheels: list[Path]
) -> tuple[Workspace, dict[str, str]]:
    """A checkout locking ``rust-adder`` with setuptools-rust (prebuilt) and the registry's
    crates; the variables its doit runs need."""
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


def import_rust_adder(wheel: Path, where: Path) -> list[object]:
    """Unpack the wheel and import it: ``[add(2, 40), the build script's network probe]``."""
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


@needs_rust
@pytest.mark.slow
def test_rust_extension_vendored_at_lock_built_offline_and_imported(
    tmp_path: Path, empty_fake_index: FakeIndex, rust_backend_wheels: list[Path]
) -> None:
    with FakeCrateRegistry() as registry:
        registry.add(tinyadd())
        ws, env = rust_workspace(tmp_path, empty_fake_index, registry, rust_backend_wheels)
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
        total, probe = import_rust_adder(wheel, tmp_path / "installed")
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
        # The crates are compiled into the wheel: its SBOM and provenance name them.
        with zipfile.ZipFile(wheel) as zf:
            (member,) = [n for n in zf.namelist() if n.endswith("sboms/affineur.cdx.json")]
            sbom = json.loads(zf.read(member))
        purls = {c.get("purl") for c in sbom["components"]}
        assert "pkg:cargo/tinyadd@1.0.0" in purls
        statement = json.loads(wheel.with_name(f"{wheel.name}.provenance.json").read_text())
        resolved = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        assert {
            "name": "tinyadd-1.0.0.crate",
            "uri": "pkg:cargo/tinyadd@1.0.0",
            "digest": {"sha256": tinyadd().sha256},
            "annotations": {"role": "vendored-crate"},
        } in resolved

        ok(ws.affineur("check"))
        # Built again elsewhere, differently, offline: the same bytes.
        verified = ok(ws.affineur("verify", "rust-adder", env=env))
        assert "1 of 1 reproducible" in verified.stdout
        # A checkout without the tree (a fresh clone) vendors it again, to the same bytes.
        shutil.rmtree(tree)
        shutil.rmtree(ws.root / "build/cache")
        ok(ws.doit(env=env))
        assert tree_hash(tree) == crates["sha256"]
        # A changed byte in the vendored tree is caught before cargo reads it.
        lib = tree / "vendor/tinyadd-1.0.0/src/lib.rs"
        lib.write_text(lib.read_text().replace("a + b", "a - b"))
        checked = ws.affineur("check")
        assert checked.returncode != 0
        assert "the vendored crates in build/sdists/crates/" in checked.stdout + checked.stderr
        shutil.rmtree(ws.root / "build/cache")
        failed = ws.doit("build", env=env)
        assert failed.returncode != 0
        assert "the vendored crates hash to" in failed.stdout + failed.stderr


def test_the_tree_hash_covers_every_path_byte_and_executable_bit(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "vendor/a-1.0/src").mkdir(parents=True)
    lib = tree / "vendor/a-1.0/src/lib.rs"
    lib.write_text("pub fn f() {}\n")
    first = tree_hash(tree)
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)
    assert tree_hash(copy) == first  # where the tree lies and its dates do not count
    lib.chmod(0o755)
    assert tree_hash(tree) != first
    lib.chmod(0o644)
    assert tree_hash(tree) == first
    lib.write_text("pub fn g() {}\n")
    assert tree_hash(tree) != first
    lib.write_text("pub fn f() {}\n")
    lib.rename(lib.with_name("main.rs"))
    assert tree_hash(tree) != first


def test_a_build_cargo_home_sends_every_source_to_the_tree_and_stays_offline(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "cargo-config.toml").write_text(
        '[source.crates-io]\nreplace-with = "vendored-sources"\n\n'
        '[source.vendored-sources]\ndirectory = "@vendor@"\n'
    )
    home = cargo_home(tmp_path / "home", tree)
    config = tomllib.loads((home / "config.toml").read_text())
    assert config["source"]["crates-io"] == {"replace-with": "vendored-sources"}
    assert config["source"]["vendored-sources"] == {"directory": str(tree / "vendor")}
    assert config["net"] == {"offline": True}


def test_host_tools_name_the_toolchain_a_rustup_proxy_runs(tmp_path: Path) -> None:
    rustup_home = tmp_path / "rustup"
    toolchain = rustup_home / "toolchains/stable-x86_64-unknown-linux-gnu/bin"
    toolchain.mkdir(parents=True)
    for tool in ("rustc", "cargo"):
        (toolchain / tool).write_text(f"#!/bin/sh\necho {tool} 9.9.9\n")
        (toolchain / tool).chmod(0o755)
    (rustup_home / "settings.toml").write_text(
        'default_toolchain = "stable-x86_64-unknown-linux-gnu"\n'
    )
    proxies = tmp_path / "cargo-bin"
    proxies.mkdir()
    (proxies / "rustup").write_text("#!/bin/sh\necho rustup 1.0\n")
    (proxies / "rustup").chmod(0o755)
    for tool in ("rustc", "cargo"):
        (proxies / tool).symlink_to("rustup")
    environ = {"PATH": str(proxies), "RUSTUP_HOME": str(rustup_home)}
    tools = HostTools(tmp_path / "memo.json", environ=environ).fingerprint()
    # The proxy's own version would say nothing about the compiler that builds.
    assert tools == {"rustc": "rustc 9.9.9", "cargo": "cargo 9.9.9"}


def _graph_with_crates(sha: str) -> g.Graph:
    node = pkg("rust-thing==1.0")
    crates = g.VendoredCrates(sha, (g.Crate("tinyadd", "1.0.0", "b" * 64),))
    node = dataclasses.replace(node, crates=crates)
    return g.Graph("demo", "cpu", "c" * 64, {}, (g.Edge(node.key, "toplevel", "rust-thing"),),
                   {node.key: node})  # fmt: skip


def test_the_lock_keeps_vendored_crates_and_its_schema_checks_them() -> None:
    graph = _graph_with_crates("a" * 64)
    again = parse_lock(g.dumps(graph), "graph.json")
    assert again.nodes[g.NodeKey("rust-thing==1.0")].crates == g.VendoredCrates(
        "a" * 64, (g.Crate("tinyadd", "1.0.0", "b" * 64),)
    )
    with pytest.raises(AffineurError) as info:
        parse_lock(g.dumps(_graph_with_crates("not-a-hash")), "graph.json")
    assert "crates" in str(info.value.key_path) + info.value.message


def test_a_crates_index_that_is_not_a_url_is_refused(
    tmp_path: Path, empty_fake_index: FakeIndex
) -> None:
    ws = make_workspace(tmp_path / "checkout", empty_fake_index)
    ws.variant(extra="crates_index: ftp://crates.example/index\n")
    ws.collection(["anything"])
    result = ws.affineur("check")
    assert result.returncode != 0
    assert "crates_index" in result.stderr
    assert "Traceback" not in result.stderr


@needs_rust
def test_a_crate_the_registry_cannot_give_fails_the_lock_in_one_line(
    tmp_path: Path, empty_fake_index: FakeIndex
) -> None:
    with FakeCrateRegistry() as registry, FakeCrateRegistry() as empty:
        registry.add(tinyadd())
        sdist = write_rust_sdist(tmp_path / "published", registry, tmp_path / "cargo-home")
        empty_fake_index.add(IndexFile("rust-adder", "1.0", sdist.name, sdist.read_bytes()))
        ws = make_workspace(tmp_path / "checkout", empty_fake_index)
        ws.variant(extra=f"crates_index: {json.dumps(empty.url)}\n")
        ws.collection(["rust-adder"])
        result = ws.affineur("lock", env={"CARGO_HOME": str(tmp_path / "cargo-home")})
    assert result.returncode != 0
    assert "error: rust-adder" in result.stderr or "error:" in result.stderr
    assert "cargo vendor failed" in result.stderr
    assert "crates_index" in result.stderr  # the hint
    assert "Traceback" not in result.stderr
    assert not (ws.root / "lock/demo/cpu/graph.json").exists()


def test_rust_source_without_a_toolchain_fails_the_build_with_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from affineur.pep517 import _rust

    source = tmp_path / "src"
    source.mkdir()
    (source / "Cargo.toml").write_text('[package]\nname = "x"\nversion = "0.1.0"\n')
    monkeypatch.setattr(_rust, "rust_toolchain", lambda: None)
    vendored = g.VendoredCrates("d" * 64, (g.Crate("tinyadd", "1.0.0", "b" * 64),))
    with pytest.raises(AffineurError) as info:
        _rust.rust_build("x", source, tmp_path, vendored=vendored, crates=None, path="/usr/bin")
    assert info.value.stage == "build-env"
    assert "prebuilt: true" in (info.value.hint or "")
    # Without crates the Rust may be optional (the backend decides), and discovery
    # goes on without a toolchain: the build is where it must be there.
    assert _rust.rust_build("x", source, tmp_path, vendored=None, crates=None, path="") is None
    got = _rust.rust_build(
        "x", source, tmp_path, vendored=vendored, crates=None, path="/usr/bin", required=False
    )
    assert got is None


def test_a_build_without_the_vendored_tree_says_how_to_get_it(tmp_path: Path) -> None:
    from affineur.pep517 import CrateStore

    store = CrateStore(tmp_path / "crates")
    with pytest.raises(AffineurError) as info:
        store.verified("rust-adder", g.VendoredCrates("d" * 64, ()))
    assert info.value.stage == "download"
    assert "doit download" in (info.value.hint or "")


@needs_rust
def test_without_a_crates_index_crates_come_as_cargo_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from affineur.index import sha256_file
    from affineur.pep517 import CrateStore

    home = tmp_path / "cargo-home"
    with FakeCrateRegistry() as registry:
        registry.add(tinyadd())
        sdist = write_rust_sdist(tmp_path / "published", registry, home)
        # The user's cargo configuration sends crates-io to a mirror: the fake registry.
        (home / "config.toml").write_text(
            '[source.crates-io]\nreplace-with = "mirror"\n\n'
            f'[source.mirror]\nregistry = "{registry.url}"\n'
        )
        monkeypatch.setenv("CARGO_HOME", str(home))
        store = CrateStore(tmp_path / "crates")
        got = store.vendor("rust-adder", sdist, sha256_file(sdist), registry=None)
    assert got is not None
    assert got.crates == (g.Crate("tinyadd", "1.0.0", tinyadd().sha256),)
    assert tree_hash(store.tree(got.sha256)) == got.sha256
    # Asked again (a re-lock), the store answers from what it vendored: no cargo, no registry.
    assert store.vendor("rust-adder", sdist, sha256_file(sdist), registry=None) == got


def test_a_cargo_lock_that_is_not_toml_fails_the_lock_with_the_package_named(
    tmp_path: Path,
) -> None:
    import io
    import tarfile

    from affineur.pep517 import CrateStore

    sdist = tmp_path / "broken_rust-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        for rel, text in {"Cargo.toml": "[package]\n", "Cargo.lock": "[[package]\nname = "}.items():
            info = tarfile.TarInfo(f"broken_rust-1.0/{rel}")
            info.size = len(text)
            tf.addfile(info, io.BytesIO(text.encode()))
    with pytest.raises(AffineurError) as info:
        CrateStore(tmp_path / "crates").vendor("broken-rust", sdist, "0" * 64, registry=None)
    assert info.value.package == "broken-rust"
    assert "Cargo.lock cannot be read" in info.value.message
