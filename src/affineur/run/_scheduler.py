"""Resource-aware parallel scheduling of doit tasks, and the doit glue that installs it.

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

How doit picks this up. doit chooses its commands and DB backends from plugin
sections of the configuration it reads from the *current directory*
(``pyproject.toml`` ``[tool.doit.plugins.*]`` or ``doit.cfg``) before it loads the
dodo file; ``DOIT_CONFIG`` inside the dodo can only set option values. So the
checkout's ``pyproject.toml`` registers :class:`ResourceRun` as doit's ``run``
command (the default command: plain ``doit``, ``doit build``, ``doit -n 2``) and
:class:`affineur.run._doit_state.DurableDB` as a backend; ``doit list``, ``info``,
``forget`` use doit's own commands over the same backend::

    [tool.doit.plugins.command]
    run = "affineur.run:ResourceRun"

    [tool.doit.plugins.backend]
    affineur = "affineur.run:DurableDB"

The dodo then sets ``DOIT_CONFIG = doit_config(engine_or_capacities)``, which
selects that backend, a state directory under ``.affineur/``, threads
(``par_type``; the process executor cannot pickle closures) and the capacities.
Run from a directory whose configuration does not register the plugins (for
example ``doit -f ../dodo.py``), :func:`doit_config` stops with a clear error
rather than running builds without their resource limits.

The run command also holds the checkout lock (:mod:`affineur.checkoutlock`) from
the moment the dodo is loaded (loading may re-lock) until the run ends; the
read-only commands never take it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from doit import cmd_run, loader
from doit.cmd_run import Run
from doit.doit_cmd import DoitConfig
from doit.exceptions import InvalidCommand, InvalidDodoFile
from doit.runner import MThreadRunner

from affineur.errors import AffineurError
from affineur.run._mutex import checkout_lock

__all__ = [
    "BACKEND_NAME",
    "Demand",
    "ResourcePool",
    "ResourceRun",
    "ResourceRunner",
    "WaitQueue",
    "check_capacities",
    "demand_of",
    "doit_config",
    "mark_run_failed",
    "run_command_active",
]

BACKEND_NAME = "affineur"
"""The name the checkout's doit configuration registers :class:`DurableDB` under."""

STATE_DIR = Path(".affineur") / "doit-state"


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


def _checked_capacities(raw: Mapping[str, Any]) -> dict[str, float]:
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


# --- the doit runner ----------------------------------------------------------------------


_CRASH = "crash"


class ResourceRunner(MThreadRunner):  # type: ignore[misc]
    """doit's thread runner, admitting tasks through a :class:`WaitQueue`.

    The main thread talks to doit's dispatcher, checks up-to-dateness and saves
    results (so the DB backend is only written from one thread); workers only
    execute actions. Every ready task is pulled from the dispatcher at once, so a
    task waiting for resources never hides a later one that fits.
    """

    def __init__(
        self,
        dep_manager: Any,
        reporter: Any,
        continue_: bool = False,
        always_execute: bool = False,
        stream: Any = None,
        num_process: int = 1,
        *,
        capacities: Mapping[str, float] | None = None,
        patience: int | None = None,
    ) -> None:
        super().__init__(
            dep_manager,
            reporter,
            continue_=continue_,
            always_execute=always_execute,
            stream=stream,
            num_process=num_process,
        )
        self.capacities = dict(capacities or {})
        self.patience = patience

    def _work(self, jobs: queue.Queue[Any], results: queue.Queue[Any]) -> None:
        while (node := jobs.get()) is not None:
            try:
                failure = self.execute_task(node.task)
            except BaseException as exc:  # a crash must reach the main thread, not vanish
                results.put((_CRASH, node, exc))
                return
            results.put((None, node, failure))

    def _pull(self, completed: Any, ready: WaitQueue[Any]) -> bool:
        """Report ``completed`` to the dispatcher, queue every task now ready.

        Returns False once the dispatcher has nothing more to give.
        """
        node = completed
        while not self._stop_running:
            try:
                step = self.task_dispatcher.generator.send(node)
            except StopIteration:
                return False
            if step == "hold on":
                return True
            node = step
            if self.select_task(node, self.tasks):
                ready.add(node, demand_of(node.task))
                node = None
            # else: up to date, failed or waiting for setup tasks; the next send
            # reports it back as processed, as doit's own runners do.
        return True

    def run_tasks(self, task_dispatcher: Any) -> None:
        self._run_tasks_init(task_dispatcher)
        ready: WaitQueue[Any] = WaitQueue(
            ResourcePool(self.capacities), self.num_process, self.patience
        )
        jobs: queue.Queue[Any] = queue.Queue()
        results: queue.Queue[Any] = queue.Queue()
        workers = [
            threading.Thread(target=self._work, args=(jobs, results), daemon=True)
            for _ in range(self.num_process)
        ]
        for worker in workers:
            worker.start()
        demands: dict[str, Demand] = {}
        more = self._pull(None, ready)
        try:
            while True:
                if not self._stop_running:
                    for node, demand in ready.admit():
                        demands[node.task.name] = demand
                        jobs.put(node)
                if ready.running == 0:
                    break
                kind, node, outcome = results.get()
                if kind == _CRASH:
                    raise outcome
                ready.done(demands.pop(node.task.name))
                self.process_task_result(node, outcome)
                if more and not self._stop_running:
                    more = self._pull(node, ready)
        finally:
            for _ in workers:
                jobs.put(None)
        for worker in workers:
            worker.join()


# --- the doit command ----------------------------------------------------------------------

_ACTIVE: dict[str, contextlib.ExitStack | None] = {"run": None}


_VERDICT = {"failed": False}


def mark_run_failed() -> None:
    """Make the current run exit non-zero although every doit task succeeded.

    In test mode a failed build is replaced by an upstream wheel and its task
    succeeds, so that dependents build; the run as a whole still failed.
    """
    _VERDICT["failed"] = True


def run_command_active() -> bool:
    """True while :class:`ResourceRun` loads and runs tasks (not for list, info, ...).

    Task creators may use it to do work only a run should do while loading, such
    as re-locking stale locks, so that ``doit list`` stays read-only and quick.
    """
    return _ACTIVE["run"] is not None


opt_resources = {
    "section": "affineur",
    "name": "resources",
    "short": "",
    "long": "",
    "type": dict,
    "default": {},
    "help": "resource capacities, e.g. {'cpu': 8, 'memory_gb': 32} (set from DOIT_CONFIG)",
}


class ResourceRun(Run):  # type: ignore[misc]
    """doit's ``run`` command, scheduling parallel runs by resources and locking the checkout."""

    name = "run"
    doc_purpose = "run tasks, in parallel within the resource capacities (-n N)"
    cmd_options = (*Run.cmd_options, opt_resources)

    def execute(self, params: Any, args: Any) -> Any:
        with contextlib.ExitStack() as stack:
            _ACTIVE["run"] = stack
            _VERDICT["failed"] = False
            try:
                result = super().execute(params, args)
            finally:
                _ACTIVE["run"] = None
            # doit's code 1 means "a task failed"; keep doit's own non-zero codes.
            return 1 if result == 0 and _VERDICT["failed"] else result

    def _execute(
        self,
        outfile: Any,
        verbosity: Any = None,
        always: bool = False,
        continue_: bool = False,
        reporter: Any = "console",
        num_process: int = 0,
        par_type: str = "thread",
        single: bool = False,
        auto_delayed_regex: bool = False,
        force_verbosity: bool = False,
        failure_verbosity: int = 0,
        pdb: bool = False,
        resources: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            capacities = _checked_capacities(resources or {})
            check_capacities(self.task_list, capacities)
        except AffineurError as exc:
            raise InvalidDodoFile(_doit_message(exc)) from None
        if num_process and par_type != "thread":
            raise InvalidCommand(
                f"parallel type {par_type!r} is not supported: affineur schedules tasks "
                "on threads (-P thread)"
            )

        class Bound(ResourceRunner):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, capacities=capacities, **kwargs)

        # doit's Run picks its parallel runner from a module global and offers no
        # hook; swap it for this call only.
        original = cmd_run.MThreadRunner
        cmd_run.MThreadRunner = Bound
        try:
            return super()._execute(
                outfile,
                verbosity=verbosity,
                always=always,
                continue_=continue_,
                reporter=reporter,
                num_process=num_process,
                par_type=par_type,
                single=single,
                auto_delayed_regex=auto_delayed_regex,
                force_verbosity=force_verbosity,
                failure_verbosity=failure_verbosity,
                pdb=pdb,
            )
        finally:
            cmd_run.MThreadRunner = original


def _doit_message(exc: AffineurError) -> str:
    """doit prints InvalidDodoFile as one clean ``ERROR:`` block, without a traceback."""
    causes = "".join(f"\n  {c}" for c in exc.causes)
    hint = f"\nhint: {exc.hint}" if exc.hint else ""
    return f"{exc.one_line()}{causes}{hint}"


# --- DOIT_CONFIG ------------------------------------------------------------------------------


class Checkout(Protocol):
    """What :func:`doit_config` needs from the engine: where, and how big the machine is."""

    @property
    def root(self) -> Path: ...

    def capacities(self) -> Mapping[str, float]: ...


def _plugins_registered() -> bool:
    """Whether the configuration doit read at start-up registers our backend.

    doit reads ``pyproject.toml`` and ``doit.cfg`` from the directory it was
    started in (``loader.initial_workdir``; it has chdir'd to the dodo's folder
    since), so look there the same way.
    """
    start = Path(getattr(loader, "initial_workdir", None) or Path.cwd())
    files = [str(start / n) for n in ("pyproject.toml", "doit.cfg") if (start / n).exists()]
    config = DoitConfig()
    # DoitConfig only reads [tool.doit] from a file named exactly "pyproject.toml".
    with _chdir(start):
        config.loads([Path(f).name for f in files])
    backends = config.as_dict().get("BACKEND", {})
    return str(backends.get(BACKEND_NAME, "")) in {
        "affineur.run:DurableDB",
        "affineur.run._doit_state:DurableDB",
    }


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def doit_config(
    source: Checkout | Mapping[str, float],
    *,
    root: Path | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``DOIT_CONFIG`` of an affineur checkout.

    ``source`` is the engine (its ``root`` and ``capacities()``) or a mapping of
    capacities with ``root`` given (default: the dodo's folder, doit's cwd while
    loading). ``extra`` entries are added as they are (``default_tasks``, ...).

    Called by ``doit run``, it also takes the checkout lock, held until the run ends.
    """
    if isinstance(source, Mapping):
        capacities, where = dict(source), (root or Path.cwd())
    else:
        try:
            # The capacities come from the variants, so this is where a broken
            # config file first shows while doit imports the dodo.
            capacities, where = dict(source.capacities()), (root or source.root)
        except AffineurError as exc:
            raise InvalidDodoFile(_doit_message(exc)) from None
    where = Path(where).resolve()
    stack = _ACTIVE["run"]
    if stack is None and not _plugins_registered():
        raise InvalidDodoFile(
            "affineur's doit plugins are not registered in the directory doit was started in\n"
            "hint: run doit from the checkout root, whose pyproject.toml registers "
            f"[tool.doit.plugins] backend {BACKEND_NAME!r} and command 'run'"
        )
    if stack is not None:
        try:
            stack.enter_context(checkout_lock(where))
        except AffineurError as exc:
            raise InvalidDodoFile(_doit_message(exc)) from None
    return {
        "backend": BACKEND_NAME,
        "dep_file": str(where / STATE_DIR),
        "par_type": "thread",
        "resources": capacities,
        **extra,
    }
