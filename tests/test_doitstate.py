"""The durable doit state backend: what a killed run leaves behind is still there."""

from __future__ import annotations

from pathlib import Path

import pytest
from doit.dependency import DatabaseException, JSONCodec

from affineur.run import DurableDB
from affineur.run._doit_state import JOURNAL, SNAPSHOT
from tests.test_scheduler import checkout, doit, runs


def open_db(path: Path) -> DurableDB:
    return DurableDB(str(path), JSONCodec())


def test_changes_survive_without_dump(tmp_path: Path) -> None:
    db = open_db(tmp_path / "state")
    db.set("a", "_values_:", {"k": 1})
    db.set("b", "deps:", ["x"])
    db.set("c", "deps:", [])
    db.remove("c")
    # no dump(): the process "dies" here
    again = open_db(tmp_path / "state")
    assert again.get("a", "_values_:") == {"k": 1}
    assert again.get("b", "deps:") == ["x"]
    assert not again.in_("c")
    again.remove_all()
    assert not open_db(tmp_path / "state").in_("a")


def test_dump_folds_the_journal_into_the_snapshot(tmp_path: Path) -> None:
    db = open_db(tmp_path / "state")
    db.set("a", "result:", "md5")
    db.dump()
    assert (tmp_path / "state" / JOURNAL).read_bytes() == b""
    assert "md5" in (tmp_path / "state" / SNAPSHOT).read_text()
    assert open_db(tmp_path / "state").get("a", "result:") == "md5"


def test_a_reader_that_changes_nothing_writes_nothing(tmp_path: Path) -> None:
    open_db(tmp_path / "state").set("a", "deps:", [])
    open_db(tmp_path / "state").dump()
    assert not (tmp_path / "state" / SNAPSHOT).exists()


def test_a_value_that_reads_back_the_same_is_not_a_change(tmp_path: Path) -> None:
    # doit saves a group task's deps as a tuple on every run; they read back as a list.
    open_db(tmp_path / "state").set("group", "deps:", ())
    again = open_db(tmp_path / "state")
    again.set("group", "deps:", ())
    again.dump()
    assert not (tmp_path / "state" / SNAPSHOT).exists()


def test_a_torn_last_entry_is_dropped_and_cut_off(tmp_path: Path) -> None:
    db = open_db(tmp_path / "state")
    db.set("a", "deps:", [])
    with (tmp_path / "state" / JOURNAL).open("ab") as journal:
        journal.write(b'["s", "b", "deps:", [')  # killed in the middle of a write
    again = open_db(tmp_path / "state")
    assert again.in_("a") and not again.in_("b")
    again.set("c", "deps:", [])
    third = open_db(tmp_path / "state")
    assert third.in_("a") and third.in_("c")


def test_a_damaged_entry_in_the_middle_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / JOURNAL).write_bytes(b'["s", "a", "deps:", []]\nnot json\n["R"]\n')
    with pytest.raises(DatabaseException, match="line 2"):
        open_db(tmp_path / "state")


def test_compaction_keeps_what_another_process_wrote(tmp_path: Path) -> None:
    run = open_db(tmp_path / "state")
    forget = open_db(tmp_path / "state")
    run.set("built", "deps:", [])
    forget.set("other", "deps:", [])
    forget.dump()  # compacts while `run` is still open
    run.set("late", "deps:", [])
    run.dump()
    final = open_db(tmp_path / "state")
    assert final.in_("built") and final.in_("other") and final.in_("late")


def killed_run_tasks() -> list[dict[str, object]]:
    return [
        *({"name": n, "seconds": 0.01} for n in "abc"),
        {"name": "d", "deps": ["a", "b", "c"], "kill": True, "seconds": 0.01},
        {"name": "e", "deps": ["d"], "seconds": 0.01},
    ]


@pytest.mark.parametrize("jobs", [[], ["-n", "2"]], ids=["serial", "parallel"])
def test_after_sigkill_only_unfinished_tasks_run_again(tmp_path: Path, jobs: list[str]) -> None:
    root = checkout(tmp_path / "co", {"cpu": 1}, killed_run_tasks())
    first = doit(root, *jobs)
    assert first.returncode == -9, first.stderr
    assert sorted(r[0] for r in runs(root)) == ["a", "b", "c"]
    second = doit(root, *jobs)
    assert second.returncode == 0, second.stderr
    assert [r[0] for r in runs(root)][3:] == ["d", "e"]
    third = doit(root, *jobs)
    assert third.returncode == 0 and len(runs(root)) == 5


def test_doit_json_backend_loses_them_for_comparison(tmp_path: Path) -> None:
    root = checkout(tmp_path / "co", {"cpu": 1}, killed_run_tasks())
    json_backend = ("--backend", "json", "--db-file", str(root / "doit.json"))
    assert doit(root, *json_backend).returncode == -9
    assert doit(root, *json_backend).returncode == 0
    assert sorted(r[0] for r in runs(root)[3:]) == ["a", "b", "c", "d", "e"]
