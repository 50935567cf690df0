"""Importing a fromager graph.json into a collection (no lock: fromager has no hashes)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from affineur.cli import main
from affineur.config import collection_text, import_fromager, load_project, parse_fromager
from affineur.errors import AffineurError
from tests.lockfactory import write_project


def node(name: str, version: str, *edges: tuple[str, str, str], pre_built: bool = False) -> Any:
    return {
        "download_url": f"http://127.0.0.1:9/files/{name}-{version}.tar.gz",
        "pre_built": pre_built,
        "version": version,
        "canonicalized_name": name,
        "edges": [{"key": k, "req_type": t, "req": r} for k, t, r in edges],
    }


# fromager's shape: requests and its deps; two setuptools for two build environments;
# the install closure holds two versions of 'certifi' (fromager resolves each alone).
FROMAGER = {
    "": {
        "download_url": "",
        "pre_built": False,
        "version": "0",
        "canonicalized_name": "",
        "edges": [
            {"key": "requests==2.32.3", "req_type": "toplevel", "req": "requests>=2.30"},
            {"key": "certifi==2024.2.2", "req_type": "toplevel", "req": "certifi<2024.7"},
        ],
    },
    "requests==2.32.3": node(
        "requests",
        "2.32.3",
        ("urllib3==2.2.1", "install", "urllib3<3,>=1.21.1"),
        ("certifi==2024.7.4", "install", "certifi>=2017.4.17"),
        ("setuptools==70.0.0", "build-system", "setuptools>=61"),
    ),
    "urllib3==2.2.1": node("urllib3", "2.2.1", ("hatchling==1.25.0", "build-system", "hatchling")),
    "certifi==2024.7.4": node("certifi", "2024.7.4"),
    "certifi==2024.2.2": node("certifi", "2024.2.2"),
    "hatchling==1.25.0": node(
        "hatchling", "1.25.0", ("setuptools==69.5.1", "build-backend", "setuptools")
    ),
    "setuptools==70.0.0": node("setuptools", "70.0.0"),
    "setuptools==69.5.1": node("setuptools", "69.5.1", pre_built=True),
}


def test_parse_keeps_requirements_and_pins_the_install_closure() -> None:
    g = parse_fromager(FROMAGER, file="graph.json")
    assert g.toplevel == ("certifi<2024.7", "requests>=2.30")
    assert g.pins == (("requests", "2.32.3"), ("urllib3", "2.2.1"))
    assert g.unpinned == ("certifi",)
    assert g.prebuilt == ("setuptools==69.5.1",)
    assert g.nodes == 7


def test_collection_text_is_valid_and_explains_itself() -> None:
    text = collection_text(
        parse_fromager(FROMAGER, file="g"), variants=["cpu"], source="graph.json"
    )
    assert "# constraints: the install closure pinned to the versions fromager" in text
    data = tomllib.loads(text)
    assert data["requirements"] == ["certifi<2024.7", "requests>=2.30"]
    assert data["constraints"] == ["requests==2.32.3", "urllib3==2.2.1"]
    assert data["variants"] == ["cpu"]


def test_import_writes_a_loadable_collection_and_no_lock(tmp_path: Path) -> None:
    write_project(tmp_path)
    g = parse_fromager(FROMAGER, file="graph.json")
    path = import_fromager(tmp_path, g, name="fromager", variants=["cpu"], source="graph.json")
    assert path == tmp_path / "collections" / "fromager.toml"
    collection = load_project(tmp_path).collections["fromager"]
    assert collection.constraints == ("requests==2.32.3", "urllib3==2.2.1")
    assert not (tmp_path / "lock").exists()
    with pytest.raises(AffineurError, match="exists already"):
        import_fromager(tmp_path, g, name="fromager", variants=["cpu"], source="graph.json")


def test_import_for_an_unknown_variant_writes_nothing(tmp_path: Path) -> None:
    write_project(tmp_path)
    g = parse_fromager(FROMAGER, file="graph.json")
    with pytest.raises(AffineurError):
        import_fromager(tmp_path, g, name="f", variants=["gpu"], source="graph.json")
    assert not (tmp_path / "collections" / "f.toml").exists()


def test_broken_graph_reports_every_problem() -> None:
    broken = json.loads(json.dumps(FROMAGER))
    broken["requests==2.32.3"]["edges"][0]["key"] = "urllib3==9"
    broken["urllib3==2.2.1"]["edges"][0]["req_type"] = "runtime"
    broken["oops"] = []
    with pytest.raises(AffineurError) as info:
        parse_fromager(broken, file="graph.json")
    causes = "\n".join(info.value.causes)
    assert "requests==2.32.3.edges.0.key: no node 'urllib3==9'" in causes
    assert "urllib3==2.2.1.edges.0.req_type: unknown 'runtime'" in causes
    assert "oops: expected a 'name==version' node object" in causes
    with pytest.raises(AffineurError, match="not a fromager graph"):
        parse_fromager([], file="graph.json")


def test_import_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path / "p")
    source = tmp_path / "graph.json"
    source.write_text(json.dumps(FROMAGER))
    assert main(["--root", str(root), "import-fromager", str(source), "--collection", "fm"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "wrote collections/fm.toml: 2 requirements, 2 pinned to fromager's versions, for cpu"
    )
    assert out[-1].startswith("fromager records no hashes, so no lock was written")
    assert load_project(root).collections["fm"].variants == ("cpu",)
    source.write_text("{")
    assert main(["--root", str(root), "import-fromager", str(source), "--collection", "x"]) == 2
    assert "cannot read the fromager graph" in capsys.readouterr().err
