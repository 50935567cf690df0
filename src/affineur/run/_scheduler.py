"""Resource-aware admission of ready tasks: demands, capacities, the pool and the queue.

doit orders tasks but knows no resources. Tasks say what they need in
``meta={"resources": {...}}``: ``{"exclusive": True}`` (no other resource-tagged task
may run beside it) and/or counted amounts such as ``{"cpu": 2, "memory_gb": 4}``
that, summed over running tasks, never exceed the capacity. A task without a
``resources`` entry (or with an empty one) is *untagged*: it takes no counted
resources and runs beside anything, exclusive tasks included. Defaults such as
"a build takes 1 cpu" belong to the task generator, not here.

Admission policy. A ready task starts as soon as a worker is free and its demand
fits what running tasks leave; a task that does not fit is passed over so that
later tasks which fit can start (no round barriers, no head-of-line blocking).
To bound starvation of big tasks, the oldest waiting task may be overtaken at
most ``patience`` times (default: twice the number of workers); after that
nothing else starts until it fits, so running tasks drain and it gets its turn.
Capacities are checked against every task when the tasks are loaded
(:func:`check_capacities`), so a demand that could never fit is a clear error
up front, never a deadlock.

Everything here is pure and knows no doit; the runner that feeds doit's ready
tasks through a :class:`WaitQueue` is in :mod:`affineur.run._doit`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from affineur.errors import AffineurError

__all__ = [
    "Demand",
    "ResourcePool",
    "WaitQueue",
    "check_capacities",
    "checked_capacities",
    "demand_of",
]


# --- demands and capacities (pure) ------------------------------------------------------


@dataclass(frozen=True)
class Demand:
    """What one task holds while it runs."""

    exclusive: bool = False
    amounts: Mapping[str, float] = field(default_factory=dict)

    @property
    def tagged(self) -> bool:
        """Untagged tasks neither wait for resources nor count against exclusivity."""
        return self.exclusive or any(v > 0 for v in self.amounts.values())


class _HasMeta(Protocol):
    name: str
    meta: Mapping[str, Any] | None


def demand_of(task: _HasMeta) -> Demand:
    """Read ``task.meta["resources"]``; raise on a malformed request, naming the task."""
    raw = (task.meta or {}).get("resources") or {}
    if not isinstance(raw, Mapping):
        raise AffineurError(
            f"task {task.name}: meta 'resources' must be a mapping, got {raw!r}", stage="config"
        )
    exclusive = False
    amounts: dict[str, float] = {}
    for name, value in raw.items():
        if name == "exclusive":
            if not isinstance(value, bool):
                raise AffineurError(
                    f"task {task.name}: resource 'exclusive' must be true or false, got {value!r}",
                    stage="config",
                )
            exclusive = value
        elif isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise AffineurError(
                f"task {task.name}: resource {name!r} must be a number >= 0, got {value!r}",
                stage="config",
            )
        else:
            amounts[str(name)] = float(value)
    return Demand(exclusive, amounts)


def _number(amount: float) -> str:
    return str(int(amount)) if float(amount).is_integer() else str(amount)


def check_capacities(tasks: Iterable[_HasMeta], capacities: Mapping[str, float]) -> None:
    """Refuse, before anything runs, every task whose demand could never fit.

    A resource missing from ``capacities`` has capacity 0. All problems are
    reported at once, each naming the task, the resource, the amount and the
    capacity.
    """
    problems: list[str] = []
    for task in tasks:
        try:
            demand = demand_of(task)
        except AffineurError as exc:
            problems.append(exc.message)
            continue
        for name, amount in sorted(demand.amounts.items()):
            capacity = float(capacities.get(name, 0))
            if amount > capacity:
                known = "" if name in capacities else " (no such resource is configured)"
                problems.append(
                    f"task {task.name} asks for {_number(amount)} {name}, "
                    f"but the capacity is {_number(capacity)}{known}"
                )
    if not problems:
        return
    raise AffineurError(
        problems[0] if len(problems) == 1 else f"{len(problems)} task resource requests cannot fit",
        hint="raise the capacity in the variant's `resources`, "
        "or lower the request in the package's override `resources`",
        stage="config",
        causes=tuple(problems) if len(problems) > 1 else (),
    )


def checked_capacities(raw: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise AffineurError(
                f"resource capacity {name!r} must be a number >= 0, got {value!r}",
                stage="config",
            )
        out[str(name)] = float(value)
    return out


class ResourcePool:
    """Capacities and what running tasks hold of them."""

    def __init__(self, capacities: Mapping[str, float]) -> None:
        self.capacities = dict(capacities)
        self.used: dict[str, float] = dict.fromkeys(self.capacities, 0.0)
        self.tagged_running = 0
        self.exclusive_running = False

    def fits(self, demand: Demand) -> bool:
        if not demand.tagged:
            return True
        if self.exclusive_running or (demand.exclusive and self.tagged_running):
            return False
        # A tiny tolerance: fractional amounts (memory_gb: 0.1) must not be refused
        # because their float sum lands a hair above the capacity.
        return all(
            self.used.get(k, 0.0) + v <= self.capacities.get(k, 0.0) + 1e-9
            for k, v in demand.amounts.items()
        )

    def acquire(self, demand: Demand) -> None:
        if not demand.tagged:
            return
        self.tagged_running += 1
        self.exclusive_running = self.exclusive_running or demand.exclusive
        for k, v in demand.amounts.items():
            self.used[k] = self.used.get(k, 0.0) + v

    def release(self, demand: Demand) -> None:
        if not demand.tagged:
            return
        self.tagged_running -= 1
        if demand.exclusive:
            self.exclusive_running = False
        for k, v in demand.amounts.items():
            self.used[k] -= v


T = TypeVar("T")


@dataclass
class _Waiting(Generic[T]):
    item: T
    demand: Demand
    overtaken: int = 0


class WaitQueue(Generic[T]):
    """Ready tasks waiting for a worker and for their resources, in arrival order.

    :meth:`admit` returns what may start now under the module's admission policy
    and takes its resources from the pool; :meth:`done` gives them back.
    """

    def __init__(self, pool: ResourcePool, workers: int, patience: int | None = None) -> None:
        self.pool = pool
        self.workers = workers
        self.patience = 2 * workers if patience is None else patience
        self.running = 0
        self._waiting: list[_Waiting[T]] = []

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, item: T, demand: Demand) -> None:
        self._waiting.append(_Waiting(item, demand))

    def admit(self) -> list[tuple[T, Demand]]:
        started: list[tuple[T, Demand]] = []
        passed_over: list[_Waiting[T]] = []
        kept: list[_Waiting[T]] = []
        for index, entry in enumerate(self._waiting):
            blocked = self.running >= self.workers or (
                passed_over and passed_over[0].overtaken >= self.patience
            )
            if not blocked and self.pool.fits(entry.demand):
                self.pool.acquire(entry.demand)
                self.running += 1
                started.append((entry.item, entry.demand))
                for earlier in passed_over:
                    earlier.overtaken += 1
                continue
            if blocked:
                kept.extend(self._waiting[index:])
                break
            passed_over.append(entry)
            kept.append(entry)
        self._waiting = kept
        if not started and self._waiting and self.running == 0:
            head = self._waiting[0]
            raise AffineurError(
                f"task {head.item} can never start: its resources exceed the capacities",
                hint="check the capacities against the tasks before running",
                stage="internal",
            )
        return started

    def done(self, demand: Demand) -> None:
        self.running -= 1
        self.pool.release(demand)
