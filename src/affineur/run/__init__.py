"""Wiring the stages together: the checkout, the doit tasks and the doit adapter."""

from affineur.run._doit_reporter import (
    ActionFailed,
    progress_reporter,
    report_config,
    test_mode_requested,
)
from affineur.run._doit_state import DurableDB
from affineur.run._engine import Engine
from affineur.run._mutex import TIMEOUT_ENV, checkout_lock, lock_path
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
    ResourceRun,
    WaitQueue,
    check_capacities,
    demand_of,
    doit_config,
)
from affineur.run._substitution import requested

__all__ = [
    "MARKDOWN_LIMIT",
    "TIMEOUT_ENV",
    "ActionFailed",
    "BuildOutcome",
    "Demand",
    "DurableDB",
    "Engine",
    "Failure",
    "PackageResult",
    "ResourcePool",
    "ResourceRun",
    "RunRecorder",
    "RunSummary",
    "Substitute",
    "WaitQueue",
    "check_capacities",
    "checkout_lock",
    "counts",
    "counts_line",
    "critical_path",
    "demand_of",
    "doit_config",
    "duration",
    "lock_path",
    "progress_reporter",
    "report_config",
    "report_json",
    "requested",
    "summary_json",
    "summary_markdown",
    "test_mode_requested",
]
