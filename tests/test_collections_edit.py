"""add/remove edit collections in place, keep comments, and never write an invalid file."""

from __future__ import annotations

from pathlib import Path

import pytest

from affineur.cli import main
from affineur.config import add_requirement, load_project, remove_requirement
from affineur.errors import AffineurError
from tests.lockfactory import COLLECTION, write_project

OTHER = """\
variants = ["cpu"]
requirements = ["idna>=3", "flask"]  # inline array stays inline
"""


def web(root: Path) -> str:
    return (root / "collections" / "web.toml").read_text()


def test_add_appends_and_keeps_comments(tmp_path: Path) -> None:
    write_project(tmp_path)
    edit = add_requirement(tmp_path, "web", "urllib3<3")
    assert edit.describe() == "web: + urllib3<3"
    assert web(tmp_path) == COLLECTION.replace('    "idna",\n', '    "idna",\n    "urllib3<3",\n')
    assert load_project(tmp_path).collections["web"].requirements[-1] == "urllib3<3"


def test_add_replaces_the_same_name_where_it_stands(tmp_path: Path) -> None:
    write_project(tmp_path)
    edit = add_requirement(tmp_path, "web", "Requests[socks]>=2.31")
    assert edit.replaced == ("requests>=2",)
    assert edit.describe() == "web: requests>=2 -> Requests[socks]>=2.31"
    assert '    "Requests[socks]>=2.31",  # the client everyone uses\n' in web(tmp_path)
    assert web(tmp_path).count("equests") == 1


def test_add_invalid_requirement_touches_nothing(tmp_path: Path) -> None:
    write_project(tmp_path)
    with pytest.raises(AffineurError, match="not a valid requirement"):
        add_requirement(tmp_path, "web", "requests >>> 2")
    assert web(tmp_path) == COLLECTION


def test_add_to_unknown_collection_lists_the_known_ones(tmp_path: Path) -> None:
    write_project(tmp_path)
    with pytest.raises(AffineurError) as info:
        add_requirement(tmp_path, "wbe", "x")
    assert info.value.hint == "collections: web"


def test_a_change_that_breaks_the_project_is_not_written(tmp_path: Path) -> None:
    # the edit is validated by loading the whole project, which knows no variant 'gpu'
    write_project(
        tmp_path, files={"collections/web.toml": "variants = ['gpu']\nrequirements = ['a']\n"}
    )
    before = web(tmp_path)
    with pytest.raises(AffineurError) as info:
        add_requirement(tmp_path, "web", "b")
    assert info.value.file == str(tmp_path / "collections" / "web.toml")
    assert "gpu" in info.value.message
    assert web(tmp_path) == before
    assert list((tmp_path / "collections").iterdir()) == [tmp_path / "collections" / "web.toml"]


def test_remove_from_one_collection(tmp_path: Path) -> None:
    write_project(tmp_path, files={"collections/other.toml": OTHER})
    edits = remove_requirement(tmp_path, "IDNA", "web")
    assert [e.describe() for e in edits] == ["web: - idna"]
    assert '"idna"' not in web(tmp_path)
    assert "# the client everyone uses" in web(tmp_path)
    assert (tmp_path / "collections" / "other.toml").read_text() == OTHER


def test_remove_everywhere(tmp_path: Path) -> None:
    write_project(tmp_path, files={"collections/other.toml": OTHER})
    edits = remove_requirement(tmp_path, "idna")
    assert [e.describe() for e in edits] == ["other: - idna>=3", "web: - idna"]
    assert (tmp_path / "collections" / "other.toml").read_text() == (
        'variants = ["cpu"]\nrequirements = ["flask"]  # inline array stays inline\n'
    )


def test_remove_absent_name_names_the_collection(tmp_path: Path) -> None:
    write_project(tmp_path)
    with pytest.raises(AffineurError, match="flask is not a requirement of collection 'web'"):
        remove_requirement(tmp_path, "flask", "web")
    with pytest.raises(AffineurError, match="not a requirement of any collection"):
        remove_requirement(tmp_path, "flask")


def test_removing_the_last_requirement_leaves_an_empty_collection(tmp_path: Path) -> None:
    # A collection may be empty (a new repository starts so); it builds nothing.
    write_project(
        tmp_path, files={"collections/web.toml": "variants = ['cpu']\nrequirements = ['a']\n"}
    )
    remove_requirement(tmp_path, "a", "web")
    assert web(tmp_path) == "variants = ['cpu']\nrequirements = []\n"


def test_add_and_remove_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_project(tmp_path, files={"collections/other.toml": OTHER})
    root = ["--root", str(tmp_path)]
    assert main([*root, "add", "idna>=3.7", "--collection", "web"]) == 0
    assert capsys.readouterr().out == "web: idna -> idna>=3.7\n"
    assert main([*root, "remove", "idna"]) == 0
    assert capsys.readouterr().out == "other: - idna>=3\nweb: - idna>=3.7\n"
    assert main([*root, "remove", "idna", "--collection", "web"]) == 2
    assert capsys.readouterr().err == (
        "error: unknown requirement 'idna' of collection 'web'; choose from: requests\n"
    )
