"""Wiring the stages together: the checkout, the doit tasks and the doit adapter.

:class:`Checkout` (made by :func:`open_checkout`) knows no doit: the ``affineur``
command and tests drive it directly. :func:`doit_tasks` gives a dodo file its
task creators; the doit plugins the checkout's ``pyproject.toml`` registers are
:class:`ResourceRun` and :class:`DurableDB`.

The names that need doit are imported on first use, so ``from affineur.run
import open_checkout`` (the ``affineur`` command) never loads doit.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from affineur.run._checkout import Checkout, LockedVariant
from affineur.run._mutex import TIMEOUT_ENV, hold_checkout, mutex_path
from affineur.run._open import IndexClients, open_checkout
from affineur.run._reports import (
    MARKDOWN_LIMIT,
    BuildOutcome,
    Failure,
    PackageResult,
    RunRecorder,
    RunSummary,
    Substitute,
    counts,
    counts_line,
    critical_path,
    duration,
    report_json,
    summary_json,
    summary_markdown,
)
from affineur.run._scheduler import (
    Demand,
    ResourcePool,
    WaitQueue,
    check_capacities,
    demand_of,
)
from affineur.run._substitution import keep_going_requested

if TYPE_CHECKING:
    from affineur.run._doit import (
        DOIT_VERSIONS,
        ActionFailed,
        CleanOutputs,
        ForgetBuilds,
        ResourceRun,
        RunContext,
        doit_config,
    )
    from affineur.run._doit_reporter import progress_reporter
    from affineur.run._doit_state import DurableDB
    from affineur.run._tasks import DoitTasks, doit_tasks

_DOIT_NAMES = {
    "DOIT_VERSIONS": "_doit",
    "ActionFailed": "_doit",
    "CleanOutputs": "_doit",
    "ForgetBuilds": "_doit",
    "ResourceRun": "_doit",
    "RunContext": "_doit",
    "doit_config": "_doit",
    "progress_reporter": "_doit_reporter",
    "DurableDB": "_doit_state",
    "DoitTasks": "_tasks",
    "doit_tasks": "_tasks",
}


def __getattr__(name: str) -> Any:
    module = _DOIT_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "DOIT_VERSIONS",
    "MARKDOWN_LIMIT",
    "TIMEOUT_ENV",
    "ActionFailed",
    "BuildOutcome",
    "Checkout",
    "CleanOutputs",
    "Demand",
    "DoitTasks",
    "DurableDB",
    "Failure",
    "ForgetBuilds",
    "IndexClients",
    "LockedVariant",
    "PackageResult",
    "ResourcePool",
    "ResourceRun",
    "RunContext",
    "RunRecorder",
    "RunSummary",
    "Substitute",
    "WaitQueue",
    "check_capacities",
    "counts",
    "counts_line",
    "critical_path",
    "demand_of",
    "doit_config",
    "doit_tasks",
    "duration",
    "hold_checkout",
    "keep_going_requested",
    "mutex_path",
    "open_checkout",
    "progress_reporter",
    "report_json",
    "summary_json",
    "summary_markdown",
]
