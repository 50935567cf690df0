"""Wiring the stages together: the checkout, the doit tasks and the doit adapter.

:class:`Checkout` (made by :func:`open_checkout`) knows no doit: the ``affineur``
command and tests drive it directly. :func:`doit_tasks` gives a dodo file its
task creators; the doit plugins the checkout's ``pyproject.toml`` registers are
:class:`ResourceRun` and :class:`DurableDB`.

The names that need doit are imported on first use, so ``from affineur.run
import open_checkout`` (the ``affineur`` command) never loads doit.
"""

from typing import TYPE_CHECKING

from affineur._lazy import lazy_exports

if TYPE_CHECKING:
    from affineur.run._checkout import Checkout, LockedVariant
    from affineur.run._context import RunContext
    from affineur.run._doit import (
        DOIT_VERSIONS,
        ActionFailed,
        CleanOutputs,
        ForgetBuilds,
        ResourceRun,
        doit_config,
    )
    from affineur.run._doit_reporter import progress_reporter
    from affineur.run._doit_state import DurableDB
    from affineur.run._gc import Garbage, find_garbage, human_size, remove_garbage
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
    from affineur.run._tasks import DoitTasks, doit_tasks
    from affineur.run._verify import Verdict, VerifyReport, select_for_verify, verify_packages

# Each name loads its module on first use (see affineur._lazy): doit loads this
# package for its plugins before every run, and a run answered from the no-op
# stamp (affineur.run._noop) needs neither the checkout nor the tasks.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "_checkout": ("Checkout", "LockedVariant"),
        "_context": ("RunContext",),
        "_doit": (
            "DOIT_VERSIONS",
            "ActionFailed",
            "CleanOutputs",
            "ForgetBuilds",
            "ResourceRun",
            "doit_config",
        ),
        "_doit_reporter": ("progress_reporter",),
        "_doit_state": ("DurableDB",),
        "_gc": ("Garbage", "find_garbage", "human_size", "remove_garbage"),
        "_mutex": ("TIMEOUT_ENV", "hold_checkout", "mutex_path"),
        "_open": ("IndexClients", "open_checkout"),
        "_reports": (
            "MARKDOWN_LIMIT",
            "BuildOutcome",
            "Failure",
            "PackageResult",
            "RunRecorder",
            "RunSummary",
            "Substitute",
            "counts",
            "counts_line",
            "critical_path",
            "duration",
            "report_json",
            "summary_json",
            "summary_markdown",
        ),
        "_scheduler": ("Demand", "ResourcePool", "WaitQueue", "check_capacities", "demand_of"),
        "_substitution": ("keep_going_requested",),
        "_tasks": ("DoitTasks", "doit_tasks"),
        "_verify": ("Verdict", "VerifyReport", "select_for_verify", "verify_packages"),
    },
)

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
    "Garbage",
    "IndexClients",
    "LockedVariant",
    "PackageResult",
    "ResourcePool",
    "ResourceRun",
    "RunContext",
    "RunRecorder",
    "RunSummary",
    "Substitute",
    "Verdict",
    "VerifyReport",
    "WaitQueue",
    "check_capacities",
    "counts",
    "counts_line",
    "critical_path",
    "demand_of",
    "doit_config",
    "doit_tasks",
    "duration",
    "find_garbage",
    "hold_checkout",
    "human_size",
    "keep_going_requested",
    "mutex_path",
    "open_checkout",
    "progress_reporter",
    "remove_garbage",
    "report_json",
    "select_for_verify",
    "summary_json",
    "summary_markdown",
    "verify_packages",
]
