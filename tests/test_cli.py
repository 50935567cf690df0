"""The affineur command as a user meets it: strict names, root discovery, help, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from affineur.cli import main
from affineur.config import validate
from affineur.pep517 import running_interpreter
from tests.lockfactory import COLLECTION, graph, pkg, web_graph, write_project

CUDA = 'description: cuda\npython: "3.11"\nindexes: ["http://127.0.0.1:9/simple"]\n'


def two_variants(root: Path) -> Path:
    """web for cpu and cuda, both locked."""
    collection = COLLECTION.replace('variants = ["cpu"]', 'variants = ["cpu", "cuda"]')
    cuda = graph(pkg("idna==3.6"), top=["idna==3.6"], variant="cuda")
    return write_project(
        root,
        [web_graph(), cuda],
        files={"collections/web.toml": collection, "variants/cuda.yaml": CUDA},
    )


def run(root: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--root", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def as_json(text: str, shape: str) -> Any:
    """Parse a command's output and hold it to its published schema."""
    data = json.loads(text)
    validate(data, f"cli-{shape}", file=shape)
    return data


# --- names are checked ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lock", "--collection", "wbe"], "error: unknown collection 'wbe'; choose from: web\n"),
        (["lock", "--variant", "gpu"], "error: unknown variant 'gpu'; choose from: cpu, cuda\n"),
        (["why", "idna", "--variant", "cdua"], "unknown variant 'cdua'; choose from: cuda, cpu"),
        (["tree", "--collection", "x"], "error: unknown collection 'x'; choose from: web\n"),
        (["export", "--variant", "gpu"], "unknown variant 'gpu'; choose from: cpu, cuda"),
        (["settings", "idan"], "error: unknown package 'idan' (not in any lock or override); "),
        (["settings", "idna", "--variant", "gpu"], "unknown variant 'gpu'"),
        (["lock", "--upgrade", "reqests"], "unknown package 'reqests' to upgrade; choose from: "),
        (["log", "idan"], "unknown package 'idan' in the lock of web/cpu, web/cuda"),
        (["outdated", "--collection", "nope"], "error: unknown collection 'nope'"),
        (["add", "x", "--collection", "nope"], "error: unknown collection 'nope'"),
        (["remove", "idan"], "error: unknown requirement 'idan'; choose from: idna, requests\n"),
        (["remove", "idna", "--constraint"], "error: unknown constraint 'idna': there are none"),
        (["graph", "--variant", "cpuu"], "error: unknown variant 'cpuu'; choose from: cpu, cuda"),
        (["serve", "--variant", "gpu"], "error: unknown variant 'gpu'"),
    ],
)
def test_unknown_names_fail_with_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    root = two_variants(tmp_path)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    code, _out, err = run(root, *args, capsys=capsys)
    assert code == 2
    assert message in err
    assert err.startswith("error: ") and "Traceback" not in err
    assert len(err.splitlines()) <= 2  # the error line, at most a hint
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_closest_choice_comes_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = two_variants(tmp_path)
    code, _out, err = run(root, "why", "setuptool", capsys=capsys)
    assert code == 2
    assert "choose from: setuptools, " in err


def test_one_lock_needs_no_flags_several_ask(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = write_project(tmp_path / "one", [web_graph()])
    commands = (["tree"], ["graph"], ["why", "idna"], ["why", "--duplicates"], ["settings", "idna"])
    for args in commands:
        code, out, err = run(one, *args, capsys=capsys)
        assert code == 0, (args, err)
        assert out
    several = two_variants(tmp_path / "two")
    for args in (["tree"], ["graph"], ["export"], ["log", "idna"]):
        code, _out, err = run(several, *args, capsys=capsys)
        assert code == 2
        assert "choose" in err and "--variant" in err, (args, err)
    code, out, _err = run(several, "why", "idna", capsys=capsys)
    assert code == 0 and "web/cpu:" in out and "web/cuda:" in out


def test_the_checkout_is_found_from_a_subfolder(tmp_path: Path) -> None:
    root = write_project(tmp_path / "repo", [web_graph()])
    deep = root / "overrides" / "patches" / "x"
    deep.mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "affineur.cli", "tree"],
        cwd=deep,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "web/cpu"
    # --root after the command works too, and a folder with no checkout above says so.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "affineur.cli", "why", "idna", "--root", str(root)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "affineur.cli", "check"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: no affineur checkout in {elsewhere}")
    assert "affineur init" in result.stderr


def test_help_and_version_speak_to_users(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert ":class:" not in text and "AffineurError" not in text
    for command in ("init", "serve", "outdated", "log", "why", "export", "check"):
        assert f"\n    {command} " in text
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("affineur ")
    with pytest.raises(SystemExit):
        main(["settings", "--help"])
    help_text = capsys.readouterr().out
    assert "--variant NAME" in help_text and "the package" in help_text


# --- settings --------------------------------------------------------------------------


def test_settings_names_the_variant_and_lists_patches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = two_variants(tmp_path)
    (root / "overrides/idna.yaml").write_text(
        "env: {IDNA_FAST: '1'}\nvariants:\n  cuda: {env: {GPU: '1'}, timeout: 60}\n"
    )
    patches = root / "overrides/patches/idna-3.7"
    patches.mkdir(parents=True)
    (patches / "0001-fix.patch").write_text("")
    code, out, _err = run(root, "settings", "idna", capsys=capsys)
    assert code == 0
    assert "idna 3.7, variant cpu (variants/cpu.yaml)" in out
    assert "idna 3.6, variant cuda (variants/cuda.yaml)" in out
    assert "patches:  overrides/patches/idna-3.7/0001-fix.patch" in out
    # How long a build may take, and the Python that builds it, whether set or not.
    cpu, cuda = out.split("\n\n")
    assert "timeout: 14400 (the default, in seconds)" in cpu
    assert "timeout: 60.0" in cuda and "the default, in seconds" not in cuda
    assert f"python: {running_interpreter().key()} (" in cpu
    code, out, _err = run(
        root, "settings", "IDNA", "--variant", "cuda", "--format", "json", capsys=capsys
    )
    (entry,) = as_json(out, "settings")
    assert entry["variant"] == "cuda" and entry["version"] == "3.6"
    assert entry["settings"]["env"] == {"GPU": "1", "IDNA_FAST": "1"}
    assert entry["patches"] == [] and entry["override_file"] == "overrides/idna.yaml"


# --- JSON output -------------------------------------------------------------------------


def test_json_of_why_tree_check_and_duplicates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path, [web_graph()])
    code, out, _ = run(root, "why", "packaging", "--format", "json", capsys=capsys)
    (entry,) = as_json(out, "why")
    assert [e["key"] for e in entry["paths"][0]] == [
        "requests==2.32.3",
        "urllib3==2.2.1",
        "hatchling==1.25.0",
        "packaging==24.1",
    ]
    assert entry["paths"][0][0]["from"] == "" and entry["paths"][0][2]["req_type"] == "build-system"

    code, out, _ = run(root, "tree", "--format", "json", capsys=capsys)
    tree = as_json(out, "tree")
    requests = next(t for t in tree["tree"] if t["name"] == "requests")
    assert {c["key"] for c in requests["children"]} >= {"urllib3==2.2.1", "idna==3.7"}
    idna = next(t for t in tree["tree"] if t["name"] == "idna")
    assert idna.get("seen") or idna.get("children") is not None

    code, out, _ = run(root, "graph", "--format", "json", capsys=capsys)
    lock = json.loads(out)
    validate(lock, "graph", file="graph")
    assert "requests==2.32.3" in lock["nodes"]

    code, out, _ = run(root, "check", "--format", "json", capsys=capsys)
    check = as_json(out, "check")
    assert code == 2 and check["ok"] is False  # the factory's lock hash is not the config's
    assert check["locks"][0]["state"] == "stale"
    assert check["pythons"] == [
        {
            "variant": "cpu",
            "python": running_interpreter().key(),
            "executable": running_interpreter().executable,
        }
    ]

    code, out, _ = run(root, "why", "--duplicates", "--format", "json", capsys=capsys)
    (dup,) = as_json(out, "duplicates")
    assert dup["name"] == "setuptools" and dup["installed"] is None
    by_version = {v["version"]: v["required_by"] for v in dup["versions"]}
    assert [e["from"] for e in by_version["69.5.1"]] == ["hatchling==1.25.0"]
    assert [e["from"] for e in by_version["70.0.0"]] == ["requests==2.32.3"]
    code, out, _ = run(root, "why", "--duplicates", capsys=capsys)
    assert "setuptools: 69.5.1, 70.0.0" in out
    assert "    hatchling==1.25.0 [build-system] setuptools" in out


def test_json_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write_project(tmp_path / "old", [web_graph()])
    new = write_project(tmp_path / "new", [web_graph(urllib3="2.3.0")])
    code, out, _ = run(new, "diff", str(old), str(new), "--format", "json", capsys=capsys)
    assert code == 1
    (entry,) = as_json(out, "diff")
    assert entry["changed"] is True
    assert {
        "scope": "install",
        "name": "urllib3",
        "old": "2.2.1",
        "new": "2.3.0",
        "kind": "upgraded",
    } in entry["versions"]


# --- editing -------------------------------------------------------------------------------


def test_add_a_constraint_keeps_the_file_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path, [web_graph()])
    code, out, _ = run(root, "add", "urllib3<2.3", "--constraint", capsys=capsys)
    assert (code, out) == (0, "web constraints: + urllib3<2.3\n")
    text = (root / "collections/web.toml").read_text()
    assert "# the client everyone uses" in text
    import tomllib

    data = tomllib.loads(text)
    assert data["constraints"] == ["urllib3<2.3"]
    assert data["requirements"] == ["requests>=2", "idna"]
    code, out, _ = run(root, "add", "urllib3<2.4", "--constraint", capsys=capsys)
    assert out == "web constraints: urllib3<2.3 -> urllib3<2.4\n"
    code, _out, err = run(root, "add", "urllib3[socks]<2", "--constraint", capsys=capsys)
    assert code == 2 and "must not have extras" in err
    assert tomllib.loads((root / "collections/web.toml").read_text())["constraints"] == [
        "urllib3<2.4"
    ]
    code, out, _ = run(root, "remove", "urllib3", "--constraint", capsys=capsys)
    assert out == "web constraints: - urllib3<2.4\n"
