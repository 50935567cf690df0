"""PEP 740 source attestations: recorded at lock time, checked at download, reported by check."""

from __future__ import annotations

import base64
import json
import shutil

import pytest

from affineur.errors import AffineurError
from affineur.graph import Publisher
from affineur.index import parse_html_page, parse_json_page, parse_provenance
from tests.ecosystem.server import pep740_provenance
from tests.workspace import Workspace, ok

PUBLISHER = {"kind": "GitHub", "repository": "example/lib-fast", "workflow": "release.yml"}
SHA = "ab" * 32


def test_the_simple_api_links_provenance_in_json_and_html() -> None:
    page = {
        "meta": {"api-version": "1.1"},
        "files": [
            {
                "filename": "demo-1.0.tar.gz",
                "url": "/files/demo-1.0.tar.gz",
                "hashes": {"sha256": SHA},
                "provenance": "/prov/demo-1.0.tar.gz",
            },
            {"filename": "demo-0.9.tar.gz", "url": "/files/demo-0.9.tar.gz", "provenance": None},
        ],
    }
    files = parse_json_page(page, "http://127.0.0.1:1/simple/demo/", "demo")
    assert [f.provenance for f in files] == ["http://127.0.0.1:1/prov/demo-1.0.tar.gz", None]
    html = '<a href="/files/demo-1.0.tar.gz" data-provenance="/prov/demo-1.0.tar.gz">x</a>'
    (found,) = parse_html_page(html, "http://127.0.0.1:1/simple/demo/", "demo")
    assert found.provenance == "http://127.0.0.1:1/prov/demo-1.0.tar.gz"


def test_an_attestation_names_its_publisher_and_must_name_these_bytes() -> None:
    raw = pep740_provenance("demo-1.0.tar.gz", SHA, PUBLISHER)
    (publisher,) = parse_provenance(raw, filename="demo-1.0.tar.gz", sha256=SHA, where="x")
    assert publisher == Publisher(
        "GitHub", (("repository", "example/lib-fast"), ("workflow", "release.yml"))
    )
    assert publisher.describe() == "GitHub example/lib-fast release.yml"
    with pytest.raises(AffineurError) as info:
        parse_provenance(raw, filename="demo-1.0.tar.gz", sha256="cd" * 32, where="x")
    assert info.value.stage == "hash"
    assert "not these bytes" in info.value.message
    broken = json.loads(raw)
    broken["attestation_bundles"][0]["attestations"][0]["envelope"]["statement"] = base64.b64encode(
        b"not json"
    ).decode()
    with pytest.raises(AffineurError, match="cannot be read"):
        parse_provenance(
            json.dumps(broken).encode(), filename="demo-1.0.tar.gz", sha256=SHA, where="x"
        )
    with pytest.raises(AffineurError):  # not the PEP 740 shape: a schema error
        parse_provenance(b'{"version": 2}', filename="demo-1.0.tar.gz", sha256=SHA, where="x")


@pytest.mark.slow
def test_attestations_are_locked_checked_at_download_and_reported(workspace: Workspace) -> None:
    index = workspace.index
    assert index is not None
    index.attest("lib-fast", "1.0", PUBLISHER)
    workspace.collection(["lib-fast", "multi"])
    ok(workspace.cli("lock"))
    nodes = workspace.nodes()
    assert nodes["lib-fast==1.0"]["sdist"]["attested_by"] == [PUBLISHER]
    assert "attested_by" not in nodes["multi==1.0"]["sdist"]

    check = ok(workspace.cli("check")).stdout
    assert "2 installed, 1 of 2 sources with publisher attestations" in check
    assert "attested  demo/cpu: lib_fast-1.0.tar.gz (GitHub example/lib-fast release.yml)" in check

    # At download the index must still name the publisher the lock recorded.
    shutil.rmtree(workspace.root / "build/sdists")
    index.attest("lib-fast", "1.0", {**PUBLISHER, "repository": "someone/else"})
    result = workspace.doit("build")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "published by GitHub someone/else release.yml" in out
    assert "the lock recorded GitHub example/lib-fast release.yml" in out

    index.attest("lib-fast", "1.0", PUBLISHER)
    ok(workspace.doit())
    (wheel,) = (workspace.root / "dist/demo/cpu/files").glob("lib_fast-*.whl")
    statement = json.loads(wheel.with_name(f"{wheel.name}.provenance.json").read_text())
    source = statement["predicate"]["buildDefinition"]["resolvedDependencies"][0]
    assert source["annotations"]["publisher_attestation"] == {
        "standard": "PEP 740",
        "publishers": [PUBLISHER],
    }


def test_an_attestation_for_other_bytes_stops_the_lock(workspace: Workspace) -> None:
    assert workspace.index is not None
    workspace.index.attest("lib-fast", "1.0", PUBLISHER, sha256="cd" * 32)
    workspace.collection(["lib-fast"])
    result = workspace.cli("lock")
    assert result.returncode == 2
    assert "lib_fast-1.0.tar.gz: an attestation names lib_fast-1.0.tar.gz sha256 cdcd" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (workspace.root / "lock/demo/cpu/graph.json").exists()
