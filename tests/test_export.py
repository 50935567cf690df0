"""Exporting the built install set: constraints with hashes and PEP 751 pylock.toml."""

from __future__ import annotations

import hashlib
import tomllib
import zipfile
from pathlib import Path

import pytest

from affineur.build import (
    BuildCache,
    BuildKey,
    ExportedWheel,
    collect_wheels,
    constraints_text,
    pylock_text,
    target_markers,
)
from affineur.cli import main
from affineur.errors import AffineurError
from affineur.graph import Graph, NodeKey
from tests.lockfactory import web_graph, write_project


def fake_keys(graph: Graph) -> dict[NodeKey, BuildKey]:
    return {k: BuildKey(hashlib.sha256(k.encode()).hexdigest()) for k in graph.nodes}


def tiny_wheel(path: Path, name: str, version: str, requires_python: str | None = None) -> Path:
    """A wheel with just enough in it to be read: its METADATA."""
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    if requires_python:
        meta += f"Requires-Python: {requires_python}\n"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{dist}/METADATA", meta)
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
    return path


def fill_cache(
    cache: BuildCache,
    graph: Graph,
    keys: dict[NodeKey, BuildKey],
    records: dict[str, dict[str, object]] | None = None,
) -> None:
    for key, node in graph.nodes.items():
        filename = f"{node.name.replace('-', '_')}-{node.version}-py3-none-any.whl"
        with cache.staging(keys[key]) as staging:
            tiny_wheel(staging / filename, node.name, node.version, ">=3.8")
            record = {"wheel": filename, **(records or {}).get(key, {})}
            cache.commit(keys[key], staging, record)


def wheel_sha(cache: BuildCache, keys: dict[NodeKey, BuildKey], key: str) -> str:
    entry = cache.get(keys[NodeKey(key)])
    assert entry is not None
    return hashlib.sha256(entry.wheel.read_bytes()).hexdigest()


def test_collect_hashes_our_wheels_of_the_install_set_only(tmp_path: Path) -> None:
    g = web_graph()
    keys = fake_keys(g)
    cache = BuildCache(tmp_path / "cache")
    fill_cache(cache, g, keys)
    wheels = collect_wheels(g, keys, cache)
    assert [(w.name, w.version) for w in wheels] == [
        ("idna", "3.7"),
        ("requests", "2.32.3"),
        ("urllib3", "2.2.1"),
    ]
    assert wheels[0].sha256 == wheel_sha(cache, keys, "idna==3.7")
    assert wheels[0].filename == "idna-3.7-py3-none-any.whl"
    assert wheels[0].size == cache.get(keys[NodeKey("idna==3.7")]).wheel.stat().st_size  # type: ignore[union-attr]
    assert wheels[0].requires_python == ">=3.8"
    assert wheels[1].dependencies == ("idna", "urllib3")
    assert {w.origin for w in wheels} == {"built"}


def test_missing_wheels_are_listed_with_the_fix(tmp_path: Path) -> None:
    g = web_graph()
    keys = fake_keys(g)
    cache = BuildCache(tmp_path / "cache")
    fill_cache(cache, g, keys)
    for key in ("idna==3.7", "urllib3==2.2.1"):
        (cache.root / keys[NodeKey(key)] / "record.json").unlink()
    with pytest.raises(AffineurError) as info:
        collect_wheels(g, keys, cache)
    assert list(info.value.causes) == ["idna==3.7", "urllib3==2.2.1"]
    assert info.value.hint is not None and "doit" in info.value.hint


WHEELS = [
    ExportedWheel("idna", "3.7", "idna-3.7-py3-none-any.whl", "a" * 64, 10),
    ExportedWheel("requests", "2.32.3", "requests-2.32.3-py3-none-any.whl", "b" * 64, 20),
]


def test_constraints_lines() -> None:
    text = constraints_text(WHEELS, header="web/cpu\nbuilt by affineur")
    assert text.splitlines() == [
        "# web/cpu",
        "# built by affineur",
        f"idna==3.7 --hash=sha256:{'a' * 64}",
        f"requests==2.32.3 --hash=sha256:{'b' * 64}",
    ]


def test_pylock_is_valid_toml_with_the_required_keys() -> None:
    text = pylock_text(
        WHEELS,
        locate=lambda w: {"path": f"dist/web/cpu/files/{w.filename}"},
        environment=target_markers({"python_version": "3.11", "sys_platform": "linux"}),
    )
    data = tomllib.loads(text)
    assert data["lock-version"] == "1.0"
    assert data["created-by"] == "affineur"
    assert data["environments"] == ["python_version == '3.11' and sys_platform == 'linux'"]
    assert [p["name"] for p in data["packages"]] == ["idna", "requests"]
    wheel = data["packages"][1]["wheels"][0]
    assert wheel == {
        "name": "requests-2.32.3-py3-none-any.whl",
        "path": "dist/web/cpu/files/requests-2.32.3-py3-none-any.whl",
        "size": 20,
        "hashes": {"sha256": "b" * 64},
    }
    assert data["packages"][1]["version"] == "2.32.3"


def test_pylock_with_an_index_url() -> None:
    data = tomllib.loads(
        pylock_text(
            WHEELS[:1],
            locate=lambda w: {"url": f"https://wheels.example/files/{w.filename}"},
            index="https://wheels.example/simple/",
        )
    )
    package = data["packages"][0]
    assert package["index"] == "https://wheels.example/simple/"
    assert package["wheels"][0]["url"] == "https://wheels.example/files/idna-3.7-py3-none-any.whl"
    assert "environments" not in data


# --- affineur export --------------------------------------------------------------


def built_project(root: Path, records: dict[str, dict[str, object]] | None = None) -> Path:
    """A project whose web/cpu lock has all its wheels in build/cache at the engine's keys."""
    write_project(root, [web_graph()])
    cache = BuildCache(root / "build" / "cache")
    fill_cache(cache, web_graph(), engine_keys(root), records)
    return root


def engine_keys(root: Path) -> dict[NodeKey, BuildKey]:
    from affineur.progress import NullReporter
    from affineur.run import open_checkout

    (lv,) = open_checkout(root, reporter=NullReporter()).locked
    return dict(lv.keys)


def test_export_constraints_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = built_project(tmp_path)
    # One lock: --collection and --variant may be left out.
    assert main(["--root", str(root), "export"]) == 0
    lines = capsys.readouterr().out.splitlines()
    idna = wheel_sha(BuildCache(root / "build" / "cache"), engine_keys(root), "idna==3.7")
    assert f"idna==3.7 --hash=sha256:{idna}" in lines
    assert [line.split("==")[0] for line in lines if not line.startswith("#")] == [
        "idna",
        "requests",
        "urllib3",
    ]
    simple = (root / "dist/web/cpu/simple").as_uri()
    assert f"#   pip install --require-hashes --only-binary :all: --index-url {simple} -r FILE" in (
        lines
    )


def test_upstream_wheels_are_labelled_in_both_exports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = built_project(
        tmp_path, {"idna==3.7": {"substituted": True}, "urllib3==2.2.1": {"prebuilt": True}}
    )
    assert main(["--root", str(root), "export"]) == 0
    text = capsys.readouterr().out
    assert "and 2 upstream wheel(s) marked below" in text
    assert "# idna: upstream wheel standing in for a failed build (test mode)" in text
    assert "# urllib3: upstream wheel (prebuilt in its settings), not built here" in text
    assert "# requests:" not in text
    assert main(["--root", str(root), "export", "--format", "pylock"]) == 0
    data = tomllib.loads(capsys.readouterr().out)
    origins = {p["name"]: p["tool"]["affineur"]["origin"] for p in data["packages"]}
    assert origins == {"idna": "upstream", "requests": "built", "urllib3": "upstream"}
    assert data["requires-python"] == "==3.11.*"
    requests = next(p for p in data["packages"] if p["name"] == "requests")
    assert requests["dependencies"] == [{"name": "idna"}, {"name": "urllib3"}]
    assert requests["requires-python"] == ">=3.8"


def test_export_pylock_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = built_project(tmp_path)
    out = root / "deploy" / "pylock.toml"
    args = ["--root", str(root), "export", "--format", "pylock", "--collection", "web"]
    assert main([*args, "--variant", "cpu", "-o", str(out)]) == 0
    data = tomllib.loads(out.read_text())
    assert {"lock-version", "created-by", "packages"} <= data.keys()
    assert data["environments"] == ["python_version == '3.11' and sys_platform == 'linux'"]
    for package in data["packages"]:
        assert {"name", "version", "wheels"} <= package.keys()
        (wheel,) = package["wheels"]
        assert wheel["path"] == f"../dist/web/cpu/files/{wheel['name']}"
        assert len(wheel["hashes"]["sha256"]) == 64
    url = "https://wheels.example/web/cpu/simple/"
    capsys.readouterr()  # the "wrote" line of the first export
    assert main([*args, "--variant", "cpu", "--index-url", url]) == 0
    data = tomllib.loads(capsys.readouterr().out)
    assert data["packages"][0]["index"] == url
    assert data["packages"][0]["wheels"][0]["url"] == (
        "https://wheels.example/web/cpu/files/idna-3.7-py3-none-any.whl"
    )
    assert main([*args, "--variant", "cpu", "-o", str(root / "lock.toml")]) == 2
    assert "pylock.toml or pylock.<name>.toml" in capsys.readouterr().err


def test_export_before_building_says_run_doit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_project(tmp_path, [web_graph()])
    args = ["--root", str(tmp_path), "export", "--collection", "web", "--variant", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "3 wheel(s) of web/cpu are not built yet" in err
    assert "  requests==2.32.3" in err
    assert "hint: run doit" in err
