"""What each wheel carries, end to end through doit and the affineur command.

One checkout is built once for the module: lib-c (patched, built with
fakebuild-core) and leaky (whose backend writes its build folder's path into the
wheel), with site settings for the SBOM and an ed25519 key that signs the
published provenance. Each test then inspects or verifies that build as a user
would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from affineur.build import BuiltFrom, EnvWheel, sbom_document, sbom_key_input
from affineur.config import Evidence, validate
from tests.ecosystem import BuiltRelease, FakeIndex, FakeProject
from tests.workspace import Workspace, copy_discovery_caches, make_workspace, ok

# The module's tests share what its module fixtures build: one worker builds it, once.
pytestmark = pytest.mark.xdist_group("evidence")

PATCH = """--- /dev/null
+++ b/lib_c/patched.txt
@@ -0,0 +1 @@
+patched here
"""
# Imported by leaky's build_wheel: it writes the build folder's path into the package.
LEAK = "import os, pathlib\npathlib.Path('leaky', 'stamp.txt').write_text(os.getcwd())\n"
EVIDENCE = """evidence:
  supplier: {name: Example Build Team, url: "https://builds.example.test"}
  namespace: "https://builds.example.test/sbom"
  builder_id: "https://builds.example.test/affineur"
"""


@dataclass
class Built:
    ws: Workspace
    first_run: subprocess.CompletedProcess[str]
    private_key: Path
    public_key: Path

    @property
    def files(self) -> Path:
        return self.ws.root / "dist/demo/cpu/files"

    def wheel(self, prefix: str) -> Path:
        (found,) = self.files.glob(f"{prefix}-*.whl")
        return found


def _write_key(directory: Path) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private = directory / "signing.pem"
    public = directory / "signing.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
    fake_catalog_releases: list[BuiltRelease],
    catalog_checkout: Path,
) -> Iterator[Built]:
    tmp = tmp_path_factory.mktemp("evidence")
    with FakeIndex() as index:
        index.add(*fake_catalog_releases)
        index.add(
            FakeProject(
                "leaky",
                "1.0",
                build_imports=("leaky_stamp",),
                extra_files={"_backend/leaky_stamp.py": LEAK},
            )
        )
        ws = make_workspace(tmp / "checkout", index)
        copy_discovery_caches(catalog_checkout, ws.root)
        ws.variant("cpu", EVIDENCE)
        ws.collection(["lib-c", "leaky"])
        ws.write("overrides/patches/lib-c/0001-add-file.patch", PATCH)
        private, public = _write_key(tmp)
        first = ok(ws.doit(env={"AFFINEUR_SIGNING_KEY": str(private)}))
        yield Built(ws, first, private, public)


def _lock_node(ws: Workspace, key: str) -> dict[str, Any]:
    node: dict[str, Any] = ws.nodes()[key]
    return node


def _sbom(wheel: Path) -> tuple[dict[str, Any], str, str]:
    with zipfile.ZipFile(wheel) as archive:
        dist_info = next(n.split("/")[0] for n in archive.namelist() if ".dist-info/" in n)
        text = archive.read(f"{dist_info}/sboms/affineur.cdx.json").decode()
        record = archive.read(f"{dist_info}/RECORD").decode()
    return json.loads(text), text, record


def test_the_publish_line_counts_wheels_not_their_statements(built: Built) -> None:
    wheels = len(list(built.files.glob("*.whl")))
    assert len(list(built.files.glob("*.provenance.json"))) == wheels
    output = built.first_run.stdout + built.first_run.stderr
    assert f"published {wheels} wheels to " in output


def test_each_built_wheel_carries_a_valid_sbom_of_what_it_was_built_from(built: Built) -> None:
    wheel = built.wheel("lib_c")
    sbom, text, record = _sbom(wheel)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert "lib_c-1.0.dist-info/sboms/affineur.cdx.json,sha256=" in record

    node = _lock_node(built.ws, "lib-c==1.0")
    package = sbom["metadata"]["component"]
    assert package["purl"] == "pkg:pypi/lib-c@1.0"
    (sdist,) = package["pedigree"]["ancestors"]
    assert sdist["hashes"] == [{"alg": "SHA-256", "content": node["sdist"]["sha256"]}]
    patch = built.ws.root / "overrides/patches/lib-c/0001-add-file.patch"
    assert package["pedigree"]["patches"] == [
        {"diff": {"url": "overrides/patches/lib-c/0001-add-file.patch"}, "type": "unofficial"}
    ]
    components = {c["bom-ref"]: c for c in sbom["components"]}
    patch_sha = hashlib.sha256(patch.read_bytes()).hexdigest()
    assert components["patch:lib-c/0001-add-file.patch"]["hashes"][0]["content"] == patch_sha

    # The build environment, by the sha256 of the very wheels that were installed.
    (env_key,) = node["build_env"]
    assert env_key.startswith("fakebuild-core==")
    tool = built.wheel("fakebuild_core")
    tool_component = components[f"build-env:{tool.name}"]
    assert tool_component["scope"] == "excluded"
    assert tool_component["hashes"][0]["content"] == hashlib.sha256(tool.read_bytes()).hexdigest()
    assert sbom["dependencies"][-1]["dependsOn"] == sorted(components)

    # Site settings, and nothing that changes from one build to the next.
    assert sbom["metadata"]["supplier"]["name"] == "Example Build Team"
    with zipfile.ZipFile(wheel) as archive:
        epoch = json.loads(archive.read("lib_c-1.0.dist-info/affineur/build.json"))[
            "source_date_epoch"
        ]
        assert archive.read("lib_c/patched.txt") == b"patched here\n"
    stamp = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert sbom["metadata"]["timestamp"].startswith(stamp)
    key = next(p["value"] for p in package["properties"] if p["name"] == "affineur:build_key")
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "https://builds.example.test/sbom")
    assert sbom["serialNumber"] == f"urn:uuid:{uuid.uuid5(namespace, key)}"


def _statement(path: Path) -> dict[str, Any]:
    envelope = json.loads(path.read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return statement


def test_each_published_wheel_has_signed_provenance_that_verifies(built: Built) -> None:
    wheel = built.wheel("lib_c")
    path = built.files / f"{wheel.name}.provenance.json"
    statement = _statement(path)
    validate(statement, "provenance", file=str(path))
    assert statement["subject"] == [
        {"name": wheel.name, "digest": {"sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}}
    ]
    definition = statement["predicate"]["buildDefinition"]
    node = _lock_node(built.ws, "lib-c==1.0")
    assert definition["externalParameters"]["lock"] == node
    assert definition["externalParameters"]["variant"] == "cpu"
    assert "env" in definition["externalParameters"]["settings"]
    resolved = {r["annotations"]["role"]: r for r in definition["resolvedDependencies"]}
    assert resolved["source"]["digest"]["sha256"] == node["sdist"]["sha256"]
    assert resolved["patch"]["name"] == "overrides/patches/lib-c/0001-add-file.patch"
    tool = built.wheel("fakebuild_core")
    assert resolved["build-environment"]["digest"]["sha256"] == (
        hashlib.sha256(tool.read_bytes()).hexdigest()
    )
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["id"] == "https://builds.example.test/affineur"
    assert run["builder"]["version"]["python"].split()[0] in ("CPython", "PyPy")
    assert run["metadata"]["startedOn"] <= run["metadata"]["finishedOn"]

    result = ok(built.ws.cli("verify", "--provenance", "--public-key", str(built.public_key)))
    assert f"ok             demo/cpu  {wheel.name} (sha256 matches, signed by" in result.stdout
    assert "3 of 3 provenance statements hold" in result.stdout

    # Exports name each wheel's statement; pylock points at it beside the wheel.
    constraints = ok(built.ws.cli("export")).stdout
    assert f"  # provenance: {wheel.name}.provenance.json" in constraints
    pylock = tomllib.loads(ok(built.ws.cli("export", "--format", "pylock")).stdout)
    package = next(p for p in pylock["packages"] if p["name"] == "lib-c")
    location = package["tool"]["affineur"]["provenance"]["path"]
    assert (built.ws.root / location).resolve() == path.resolve()


@pytest.mark.slow
def test_a_changed_wheel_or_a_wrong_key_fails_the_provenance_check(
    built: Built, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    for part in ("collections", "variants", "dist"):
        shutil.copytree(built.ws.root / part, copy / part)
    ws = Workspace(copy, built.ws.index)
    other = tmp_path / "other"
    other.mkdir()
    _, wrong = _write_key(other)
    result = ws.cli("verify", "--provenance", "--public-key", str(wrong))
    assert result.returncode == 1
    assert "no valid signature" in result.stdout

    wheel = next((copy / "dist/demo/cpu/files").glob("lib_c-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[-30] ^= 0xFF
    wheel.unlink()  # published files are links into the cache: never write through them
    wheel.write_bytes(bytes(data))
    result = ws.cli("verify", "--provenance", "--public-key", str(built.public_key))
    assert result.returncode == 1
    assert f"FAILED         demo/cpu  {wheel.name}" in result.stdout
    assert "the published file has" in result.stdout

    statement = wheel.with_name(f"{wheel.name}.provenance.json")
    statement.unlink()
    result = ws.cli("verify", "--provenance", "lib-c")
    assert result.returncode == 1
    assert f"no {statement.name} beside it" in result.stdout

    garbage = tmp_path / "garbage.pub"
    garbage.write_text("not a key\n")
    result = ws.cli("verify", "--provenance", "--public-key", str(garbage))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_verify_rebuilds_differently_and_reports_each_difference(built: Built) -> None:
    assert "verify" not in built.first_run.stdout  # not a default task
    result = built.ws.cli("verify")
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "reproducible      cpu:lib-c-1.0  lib_c-1.0-py3-none-any.whl" in out
    assert "reproducible      cpu:fakebuild-core-1.0" in out
    assert "NOT reproducible  cpu:leaky-1.0  leaky-1.0-py3-none-any.whl" in out
    assert "    leaky/stamp.txt: content differs" in out
    assert "2 of 3 reproducible (66.7%)" in out
    assert "umask 0077" in out
    report = json.loads((built.ws.root / "build/reports/verify.json").read_text())
    validate(report, "verify", file="verify.json")
    assert report["percent"] == 66.7
    # The rebuilds leave nothing behind.
    assert not any((built.ws.root / "build/verify").iterdir())

    result = ok(built.ws.cli("verify", "lib-c", "fakebuild-core", "--variant", "cpu"))
    assert "2 of 2 reproducible (100.0%)" in result.stdout


@pytest.mark.slow
def test_verify_doit_tasks_fail_only_for_what_does_not_reproduce(built: Built) -> None:
    listed = ok(built.ws.doit("list", "--all")).stdout
    assert "verify:cpu:lib-c-1.0" in listed
    ok(built.ws.doit("verify:cpu:lib-c-1.0"))
    result = built.ws.doit("verify:cpu:leaky-1.0")
    assert result.returncode != 0
    assert "leaky/stamp.txt: content differs" in result.stdout + result.stderr


def test_verify_refuses_unknown_names_and_variants(built: Built) -> None:
    result = built.ws.cli("verify", "lib-cc")
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith(
        "error: unknown package 'lib-cc' in the lock of demo/cpu; choose from: lib-c"
    )
    result = built.ws.cli("verify", "--variant", "gpu")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown variant 'gpu'; choose from: cpu")
    result = built.ws.cli("verify", "--provenance", "leaky-typo")
    assert result.returncode == 2
    assert "unknown package 'leaky-typo' among the published wheels" in result.stderr


# --- pure: the SBOM document and the build key ----------------------------------------


def _built_from(**changes: Any) -> BuiltFrom:
    base: dict[str, Any] = {
        "name": "demo",
        "version": "1.0",
        "sdist_filename": "demo-1.0.tar.gz",
        "sdist_sha256": "a" * 64,
        "patches": [("demo/fix.patch", "b" * 64)],
        "build_env": [EnvWheel("setuptools", "80.0", "setuptools-80.0-py3-none-any.whl", "c" * 64)],
        "build_key": "d" * 64,
        "variant": "cpu",
        "source_date_epoch": 1_700_000_000,
    }
    return BuiltFrom(**{**base, **changes})


def test_the_sbom_is_deterministic_and_schema_valid() -> None:
    evidence = Evidence(supplier="ACME", namespace="urn:example:sbom")
    first = sbom_document(_built_from(), evidence)
    assert first == sbom_document(_built_from(), evidence)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(first.decode()) is None
    other = sbom_document(_built_from(build_key="e" * 64), evidence)
    assert json.loads(other)["serialNumber"] != json.loads(first)["serialNumber"]


def test_sbom_site_settings_are_build_inputs() -> None:
    assert sbom_key_input(Evidence(supplier="A")) != sbom_key_input(Evidence(supplier="B"))
    # The builder's name is not in the wheel, so it must not rebuild anything.
    assert sbom_key_input(Evidence(builder_id="urn:x:a")) == sbom_key_input(
        Evidence(builder_id="urn:x:b")
    )


def test_provenance_travels_with_a_wheel_through_the_remote_cache(tmp_path: Path) -> None:
    from affineur.build import BuildCache, BuildFacts, BuildKey, RemoteCache, provenance_statement
    from affineur.config import effective_remote_cache
    from affineur.progress import NullReporter

    key = BuildKey("a" * 64)
    mine = BuildCache(tmp_path / "mine")
    with mine.staging(key) as staging:
        wheel = staging / "demo-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr("demo-1.0.dist-info/affineur/build.json", json.dumps({"build_key": key}))
        facts = BuildFacts(
            lock_node={
                "name": "demo",
                "version": "1.0",
                "prebuilt": False,
                "edges": [],
                "build_env": [],
                "sdist": {"filename": "demo-1.0.tar.gz", "sha256": "b" * 64},
            },
            variant="cpu",
            target={},
            settings={},
            patches=(),
            build_env=(),
            build_key=key,
            source_date_epoch=1_700_000_000,
            network_isolation=True,
            builder_id=None,
            started=1_800_000_000.0,
            finished=1_800_000_009.0,
        )
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        statement = provenance_statement(wheel.name, sha, facts)
        (staging / f"{wheel.name}.provenance.json").write_text(json.dumps(statement))
        mine.commit(key, staging, {"name": "demo", "version": "1.0", "build_key": key,
                                   "wheel": wheel.name})  # fmt: skip
    setting = effective_remote_cache({"url": (tmp_path / "remote").as_uri()}, {}, origin="v.yaml")
    assert setting is not None
    remote = RemoteCache(setting, reporter=NullReporter())
    assert remote.push(mine.entry(key))
    got = remote.fetch(key, BuildCache(tmp_path / "theirs"), name="demo", version="1.0")
    assert got is not None and got.provenance is not None
    assert json.loads(got.provenance.read_text()) == statement

    # A statement that names other bytes does not come along: the entry is refused.
    entry_file = tmp_path / "remote/v1/builds" / key / "entry.json"
    entry = json.loads(entry_file.read_text())
    entry["provenance"]["subject"][0]["digest"]["sha256"] = "c" * 64
    entry_file.write_text(json.dumps(entry))
    assert remote.fetch(key, BuildCache(tmp_path / "third"), name="demo", version="1.0") is None


def test_a_bad_signing_key_stops_publishing_with_one_error(built: Built, tmp_path: Path) -> None:
    before = sorted(p.name for p in built.files.iterdir())
    garbage = tmp_path / "key.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    result = built.ws.doit("publish", env={"AFFINEUR_SIGNING_KEY": str(garbage)})
    assert result.returncode != 0
    assert "not an unencrypted PEM private key" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in built.files.iterdir()) == before
