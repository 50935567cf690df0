"""The doit adapter: every use of doit beyond its documented dodo-file API lives here.

doit is a good task runner with a small public API (task dicts, ``DOIT_CONFIG``,
reporter and command plugins). affineur needs a little more: a parallel runner
that admits tasks by resources, a ``run`` command that holds the checkout mutex
and exits non-zero when a substituted build hid a failure, and a check of the
plugin configuration doit read at start-up. Those reach into doit's runner,
task control, loader and config; keeping them in this one module (and
``doit`` pinned to the versions the canary test in ``tests/test_doit_adapter.py``
checks) means a doit release can only break affineur here, and loudly.

How doit picks this up. doit chooses its commands and DB backends from plugin
sections of the configuration it reads from the *current directory*
(``pyproject.toml`` ``[tool.doit.plugins.*]`` or ``doit.cfg``) before it loads the
dodo file; ``DOIT_CONFIG`` inside the dodo can only set option values. So the
checkout's ``pyproject.toml`` registers :class:`ResourceRun` as doit's ``run``
command (the default command: plain ``doit``, ``doit build``, ``doit -n 2``),
:class:`ForgetBuilds` and :class:`CleanOutputs` as ``forget`` and ``clean``, and
:class:`affineur.run._doit_state.DurableDB` as a backend; ``doit list`` and
``info`` use doit's own commands over the same backend::

    [tool.doit.plugins.command]
    run = "affineur.run:ResourceRun"
    forget = "affineur.run:ForgetBuilds"
    clean = "affineur.run:CleanOutputs"

    [tool.doit.plugins.backend]
    affineur = "affineur.run:DurableDB"

The dodo's ``DOIT_CONFIG`` comes from :func:`doit_config`, which selects that
backend, a state directory under ``.affineur/``, threads (``par_type``; the
process executor cannot pickle closures) and the capacities. Run from a
directory whose configuration does not register the plugins (for example
``doit -f ../dodo.py``), it stops with a clear error rather than running builds
without their resource limits.

The run command makes the :class:`~affineur.run._context.RunContext` that the
dodo's checkout and the reporter of the same invocation share, and answers a
plain run from the no-op stamp (:mod:`affineur.run._noop`) when it holds.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from doit import cmd_run, doit_cmd, get_var, loader
from doit.cmd_clean import Clean
from doit.cmd_forget import Forget
from doit.cmd_run import Run
from doit.dependency import DatabaseException
from doit.doit_cmd import DoitConfig
from doit.exceptions import BaseFail, InvalidCommand, InvalidDodoFile, TaskFailed, UnmetDependency
from doit.runner import MThreadRunner
from doit.tools import config_changed

from affineur.errors import AffineurError, error_text
from affineur.run._context import RunContext, current_run, entered
from affineur.run._mutex import hold_checkout
from affineur.run._noop import Stat, environment_key, input_stats, noop_summary, remove_stamp
from affineur.run._reports import counts_line
from affineur.run._scheduler import (
    Demand,
    ResourcePool,
    WaitQueue,
    check_capacities,
    checked_capacities,
    demand_of,
)
from affineur.run._stopping import builds_end_with_the_run

__all__ = [
    "BACKEND_NAME",
    "DOIT_VERSIONS",
    "STATE_DIR",
    "ActionFailed",
    "BaseFail",
    "CleanOutputs",
    "DatabaseException",
    "ForgetBuilds",
    "ResourceRun",
    "ResourceRunner",
    "UnmetDependency",
    "action",
    "config_changed",
    "doit_config",
    "keep_going_from_doit",
    "load_error",
]

DOIT_VERSIONS = ">=0.36,<0.38"
"""The doit releases this adapter is tested with; pyproject.toml requires the same."""

BACKEND_NAME = "affineur"
"""The name the checkout's doit configuration registers :class:`DurableDB` under."""

STATE_DIR = Path(".affineur") / "doit-state"


def keep_going_from_doit() -> bool:
    """``doit test_mode=1`` or ``AFFINEUR_TEST_MODE=1``, read while the dodo loads."""
    from affineur.run._substitution import keep_going_requested

    try:
        return keep_going_requested(get_var("test_mode"), os.environ)
    except AffineurError as exc:
        raise load_error(exc) from None


# --- actions and loading errors ------------------------------------------------------------


class ActionFailed(TaskFailed):  # type: ignore[misc]
    """doit's TaskFailed, keeping the AffineurError it came from for the report."""

    def __init__(self, message: str, error: AffineurError) -> None:
        super().__init__(message)
        self.error = error


def action(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A checkout function as a doit action: our errors become a clean task failure."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
        except AffineurError as exc:
            return ActionFailed(error_text(exc), exc)
        # doit reads a returned dict or string as the task's result, and False as failure.
        return None if result is None else True

    run.__name__ = getattr(fn, "__name__", "action")
    run.__doc__ = fn.__doc__
    return run


def load_error(exc: AffineurError) -> InvalidDodoFile:
    """doit prints InvalidDodoFile as one clean ``ERROR:`` block, without a traceback."""
    return InvalidDodoFile(error_text(exc, prefix=""))


# --- the runner ------------------------------------------------------------------------------


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

opt_resources = {
    "section": "affineur",
    "name": "resources",
    "short": "",
    "long": "",
    "type": dict,
    "default": {},
    "help": "resource capacities, e.g. {'cpu': 8, 'memory_gb': 32} (set from DOIT_CONFIG)",
}


opt_executor = {
    "section": "affineur",
    "name": "executor",
    "short": "",
    "long": "executor",
    "type": str,
    "default": "",
    "help": "where build actions run: local, or a Dask scheduler as dask://host:8786 "
    "(overrides AFFINEUR_EXECUTOR and the variants' executor)",
}


class ResourceRun(Run):  # type: ignore[misc]
    """doit's ``run`` command, scheduling parallel runs by resources and locking the checkout."""

    name = "run"
    doc_purpose = "run tasks, in parallel within the resource capacities (-n N)"
    cmd_options = (*Run.cmd_options, opt_resources, opt_executor)

    def execute(self, params: Any, args: Any) -> Any:
        started, where = time.monotonic(), Path.cwd()
        key = _stamp_key(params, args)
        if key is not None and self._noop(where, key, started):
            return 0
        before = input_stats(where) if key is not None else {}
        # Read before the dodo loads: the checkout it makes needs it.
        context = RunContext(
            running=True, executor=params.get("executor") or None, selected=tuple(args)
        )
        with entered(context), context.held, builds_end_with_the_run():
            result = super().execute(params, args)
            if key is not None and result == 0 and not context.failed:
                _stamp(context, where, key, before)
        # doit's code 1 means "a task failed"; keep doit's own non-zero codes.
        return 1 if result == 0 and context.failed else result

    def _noop(self, where: Path, key: str, started: float) -> bool:
        """Answer a plain run from the no-op stamp, when it holds (see affineur.run._noop)."""
        from affineur.run._report_files import write_reports

        try:
            # A run in progress removed the stamp: no use waiting for it here.
            with hold_checkout(where, timeout=0):
                summary = noop_summary(where, key, started=started)
                if summary is None:
                    return False
                paths = write_reports(summary, where / "build" / "reports")
        except (AffineurError, OSError):
            return False  # the long way says what is wrong, if anything is
        sys.stdout.write(f"{counts_line(summary)}\n")
        sys.stdout.write(f"reports: {', '.join(str(p) for p in paths)}\n")
        sys.stdout.flush()
        return True

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
        executor: str = "",
    ) -> Any:
        try:
            capacities = checked_capacities(resources or {})
            check_capacities(self.task_list, capacities)
        except AffineurError as exc:
            raise load_error(exc) from None
        current_run().workers = max(1, num_process)
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


# Options that change nothing in a run with nothing to do: a no-op stamp written by
# ``doit -n 2`` serves ``doit`` too.
_NOT_IN_STAMP = frozenset({"num_process", "verbosity", "failure_verbosity", "pdb"})


def _stamp_key(params: Any, args: Any) -> str | None:
    """The no-op stamp's key of a plain run (default tasks, no ``-a``, on stdout); else None."""
    if args or params.get("always") or params.get("outfile", sys.stdout) is not sys.stdout:
        return None
    options = {k: v for k, v in params.items() if k not in _NOT_IN_STAMP and k != "outfile"}
    return environment_key(dict(doit_cmd._CMDLINE_VARS or {}), options)


def _stamp(context: RunContext, where: Path, key: str, before: Mapping[str, Stat]) -> None:
    """Write the no-op stamp after a plain run that left nothing to do."""
    if context.write_stamp is None or context.summary is None or context.root is None:
        return
    if context.root.resolve() != where.resolve():
        return  # the stamp is looked for where doit starts
    # Only a shortcut: a stamp that cannot be written leaves the next run the long way.
    with contextlib.suppress(AffineurError, OSError):
        context.write_stamp(key, context.summary, before)


class ForgetBuilds(Forget):  # type: ignore[misc]
    """doit's ``forget``; a forgotten build is then built again, not taken from the cache.

    doit forgets a task's saved state, so the next run executes it; but the build
    action would find the cache entry of its unchanged key and reuse it. A person
    who forgets a build wants it built: the checkout is told to build those keys
    again (:meth:`affineur.run._checkout.Checkout.request_rebuild`).
    """

    name = "forget"

    def execute(self, params: Any, args: Any) -> Any:
        remove_stamp(Path.cwd())
        with entered(RunContext()):
            return super().execute(params, args)

    def _execute(self, forget_sub: Any, forget_disable_default: Any, forget_all: Any) -> Any:
        # doit passes options by the names of this signature: keep it the same as Forget's.
        forgotten: list[str] = []
        remove, remove_all = self.dep_manager.remove, self.dep_manager.remove_all

        def removing(name: str) -> None:
            forgotten.append(name)
            remove(name)

        def removing_all() -> None:
            forgotten.extend(t.name for t in self.task_list)
            remove_all()

        self.dep_manager.remove, self.dep_manager.remove_all = removing, removing_all
        result = super()._execute(forget_sub, forget_disable_default, forget_all)
        tasks = {t.name: t for t in self.task_list}
        keys = [
            str(info["key"])
            for name in forgotten
            if name in tasks
            and isinstance(info := (tasks[name].meta or {}).get("package"), Mapping)
            and "key" in info
        ]
        context = current_run()
        if keys and context.request_rebuild is not None:
            context.request_rebuild(keys)
        return result


class CleanOutputs(Clean):  # type: ignore[misc]
    """doit's ``clean``, holding the checkout mutex: it deletes what a run may be using."""

    name = "clean"

    def execute(self, params: Any, args: Any) -> Any:
        with hold_checkout(Path.cwd()):
            remove_stamp(Path.cwd())
            return super().execute(params, args)


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
    capacities: Mapping[str, float] | Callable[[], Mapping[str, float]],
    *,
    root: Path | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``DOIT_CONFIG`` of an affineur checkout.

    ``capacities`` are the resource capacities, or a function giving them (the
    checkout's: they come from the variants, so this is where a broken config
    file first shows while doit imports the dodo). ``root`` is the checkout
    (default: the dodo's folder, doit's cwd while loading). ``extra`` entries are
    added as they are (``default_tasks``, ``reporter``, ...).

    Called by ``doit run``, it also takes the checkout mutex, held until the run ends.
    """
    try:
        capacities = dict(capacities() if callable(capacities) else capacities)
    except AffineurError as exc:
        raise load_error(exc) from None
    where = Path(root or Path.cwd()).resolve()
    context = current_run()
    if not context.running and not _plugins_registered():
        raise InvalidDodoFile(
            "affineur's doit plugins are not registered in the directory doit was started in\n"
            "hint: run doit from the checkout root, whose pyproject.toml registers "
            f"[tool.doit.plugins] backend {BACKEND_NAME!r} and command 'run'"
        )
    if context.running:
        try:
            context.held.enter_context(hold_checkout(where))
        except AffineurError as exc:
            raise load_error(exc) from None
        # This run may change what the no-op stamp vouches for: it writes a new one
        # at its end if it can.
        remove_stamp(where)
    return {
        "backend": BACKEND_NAME,
        "dep_file": str(where / STATE_DIR),
        "par_type": "thread",
        "resources": capacities,
        **extra,
    }
