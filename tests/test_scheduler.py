"""Resource-aware scheduling: the admission rules, then real doit runs of sleeping tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from affineur.errors import AffineurError
from affineur.run import Demand, ResourcePool, WaitQueue, check_capacities, demand_of
from tests.paths import REPO

DODO = REPO / "tests" / "data" / "scheduler" / "dodo.py"

DOIT_CFG = """\
[COMMAND]
run = affineur.run:ResourceRun

[BACKEND]
affineur = affineur.run:DurableDB
"""


@dataclass
class FakeTask:
    name: str
    meta: dict[str, Any] | None = field(default_factory=dict)


def res(**resources: Any) -> FakeTask:
    return FakeTask("t", {"resources": resources})


# --- pure rules ---------------------------------------------------------------------------


def test_exclusive_excludes_tagged_tasks_but_not_untagged_ones() -> None:
    pool = ResourcePool({"cpu": 4})
    pool.acquire(Demand(exclusive=True))
    assert not pool.fits(Demand(amounts={"cpu": 1}))
    assert not pool.fits(Demand(exclusive=True))
    assert pool.fits(Demand())
    pool.release(Demand(exclusive=True))
    pool.acquire(Demand(amounts={"cpu": 1}))
    assert not pool.fits(Demand(exclusive=True))


def test_counted_resources_never_exceed_capacity() -> None:
    pool = ResourcePool({"cpu": 2, "memory_gb": 1})
    pool.acquire(Demand(amounts={"cpu": 1, "memory_gb": 0.7}))
    assert pool.fits(Demand(amounts={"cpu": 1, "memory_gb": 0.3}))
    assert not pool.fits(Demand(amounts={"cpu": 1, "memory_gb": 0.4}))
    assert not pool.fits(Demand(amounts={"cpu": 2}))


def test_a_task_that_does_not_fit_does_not_block_later_ones() -> None:
    queue: WaitQueue[str] = WaitQueue(ResourcePool({"cpu": 2}), workers=4)
    queue.add("small-1", Demand(amounts={"cpu": 1}))
    assert [i for i, _ in queue.admit()] == ["small-1"]
    queue.add("big", Demand(amounts={"cpu": 2}))
    queue.add("small-2", Demand(amounts={"cpu": 1}))
    queue.add("free", Demand())
    assert [i for i, _ in queue.admit()] == ["small-2", "free"]
    assert len(queue) == 1


def test_a_big_task_is_overtaken_at_most_patience_times() -> None:
    queue: WaitQueue[str] = WaitQueue(ResourcePool({"cpu": 2}), workers=4, patience=2)
    small = Demand(amounts={"cpu": 1})
    queue.add("s0", small)
    queue.admit()
    queue.add("big", Demand(amounts={"cpu": 2}))
    for n in range(1, 5):
        queue.add(f"s{n}", small)
    assert [i for i, _ in queue.admit()] == ["s1"]  # 1st overtake
    queue.done(small)
    assert [i for i, _ in queue.admit()] == ["s2"]  # 2nd and last
    queue.done(small)
    assert queue.admit() == []  # s3 waits although it fits: big has waited enough
    queue.done(small)
    assert [i for i, _ in queue.admit()] == ["big"]


def test_workers_bound_what_starts() -> None:
    queue: WaitQueue[str] = WaitQueue(ResourcePool({}), workers=2)
    for n in range(4):
        queue.add(f"t{n}", Demand())
    assert [i for i, _ in queue.admit()] == ["t0", "t1"]


def test_check_capacities_names_task_resource_amount_and_capacity() -> None:
    tasks = [
        FakeTask("build:a", {"resources": {"cpu": 4}}),
        FakeTask("build:b", {"resources": {"gpu": 1, "exclusive": True}}),
        FakeTask("build:ok", {"resources": {"cpu": 2, "gpu": 0}}),
        FakeTask("untagged", None),
    ]
    with pytest.raises(AffineurError) as info:
        check_capacities(tasks, {"cpu": 2})
    assert list(info.value.causes) == [
        "task build:a asks for 4 cpu, but the capacity is 2",
        "task build:b asks for 1 gpu, but the capacity is 0 (no such resource is configured)",
    ]
    check_capacities(tasks[2:], {"cpu": 2})


@pytest.mark.parametrize(
    "resources", [{"exclusive": 1}, {"cpu": -1}, {"cpu": "2"}, {"cpu": True}, ["cpu"]]
)
def test_malformed_requests_are_refused(resources: Any) -> None:
    with pytest.raises(AffineurError, match="task t"):
        demand_of(FakeTask("t", {"resources": resources}))


# --- real doit runs -----------------------------------------------------------------------


def doit(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "doit", "-f", str(DODO), *args],
        cwd=root,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
            "SCHEDULER_SPEC": str(root / "spec.json"),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def checkout(root: Path, capacities: dict[str, float], tasks: Sequence[dict[str, Any]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "doit.cfg").write_text(DOIT_CFG)
    spec = {"root": str(root), "capacities": capacities, "tasks": list(tasks)}
    (root / "spec.json").write_text(json.dumps(spec))
    return root


def runs(root: Path) -> list[tuple[str, float, float]]:
    log = root / "log.jsonl"
    if not log.exists():
        return []
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()]  # type: ignore[misc]


def resources_at(
    instant: float, rows: list[tuple[str, float, float]], tasks: dict[str, Any]
) -> dict[str, float]:
    used: dict[str, float] = {}
    for name, start, end in rows:
        if start <= instant < end:
            for key, amount in tasks[name].get("resources", {}).items():
                used[key] = used.get(key, 0) + float(amount)
    return used


def test_parallel_run_respects_exclusive_and_counted_resources(tmp_path: Path) -> None:
    tasks: list[dict[str, Any]] = [
        *({"name": f"c{n}", "resources": {"cpu": 1, "memory_gb": 2}} for n in range(4)),
        *({"name": f"x{n}", "resources": {"exclusive": True}} for n in range(2)),
        {"name": "big", "resources": {"cpu": 2, "memory_gb": 4}},
        *({"name": f"free{n}"} for n in range(3)),
    ]
    root = checkout(tmp_path / "co", {"cpu": 2, "memory_gb": 4}, tasks)
    result = doit(root, "-n", "4")
    assert result.returncode == 0, result.stderr
    rows = runs(root)
    by_name = {t["name"]: t for t in tasks}
    assert sorted(r[0] for r in rows) == sorted(by_name)

    tagged = [r for r in rows if by_name[r[0]].get("resources")]
    for name, start, end in tagged:
        if by_name[name]["resources"].get("exclusive"):
            overlapping = [o for o, s, e in tagged if o != name and s < end and start < e]
            assert overlapping == [], f"exclusive {name} overlapped {overlapping}"
    for _, start, _ in rows:
        used = resources_at(start, rows, by_name)
        assert used.get("cpu", 0) <= 2 and used.get("memory_gb", 0) <= 4, used

    # 10 tasks of 0.2 s take 2 s one after the other. Two c-tasks fit at once and
    # the untagged ones run beside the rest, so the tagged work needs 2 + 2 + 1
    # slots: about 1 s.
    span = max(r[2] for r in rows) - min(r[1] for r in rows)
    assert span < 1.5, span


def test_a_waiting_task_does_not_block_ones_that_fit(tmp_path: Path) -> None:
    tasks = [
        {"name": "a", "resources": {"cpu": 1}, "seconds": 0.4},
        {"name": "big", "resources": {"cpu": 2}},
        {"name": "b", "resources": {"cpu": 1}},
    ]
    root = checkout(tmp_path / "co", {"cpu": 2}, tasks)
    assert doit(root, "-n", "3").returncode == 0
    start = {name: s for name, s, _ in runs(root)}
    end = {name: e for name, _, e in runs(root)}
    assert start["b"] < end["a"] <= start["big"]


def test_serial_run_runs_in_order(tmp_path: Path) -> None:
    tasks = [{"name": n, "resources": {"exclusive": True}, "seconds": 0.01} for n in "abc"]
    root = checkout(tmp_path / "co", {}, tasks)
    result = doit(root)
    assert result.returncode == 0, result.stderr
    assert [r[0] for r in runs(root)] == ["a", "b", "c"]


def test_over_capacity_request_is_a_clear_load_time_error(tmp_path: Path) -> None:
    tasks = [{"name": "ok"}, {"name": "huge", "resources": {"cpu": 8}}]
    root = checkout(tmp_path / "co", {"cpu": 2}, tasks)
    result = doit(root, "-n", "2")
    assert result.returncode != 0
    assert "task work:huge asks for 8 cpu, but the capacity is 2" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert runs(root) == []  # refused before anything ran


def test_without_the_plugins_registered_doit_stops_with_a_hint(tmp_path: Path) -> None:
    root = checkout(tmp_path / "co", {"cpu": 1}, [{"name": "a"}])
    (root / "doit.cfg").unlink()
    result = doit(root, "-n", "2")
    assert result.returncode == 3
    assert "plugins are not registered" in result.stderr
    assert "Traceback" not in result.stderr
    assert runs(root) == []
