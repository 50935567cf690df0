"""Stage 2: build one locked package into the content-addressed cache, and publish indexes."""

from affineur.build._builder import Builder, BuildRequest
from affineur.build._cache import BuildCache, CacheEntry, Discarded
from affineur.build._export import (
    ExportedWheel,
    collect_wheels,
    constraints_text,
    pylock_text,
    target_markers,
    target_requires_python,
)
from affineur.build._hosttools import HOST_TOOLS, HostTools
from affineur.build._job import (
    BuildJob,
    cancel_run,
    job_graph,
    job_main,
    result_error,
    run_on_worker,
)
from affineur.build._key import BuildInputs, BuildKey, build_keys, compute_key
from affineur.build._publish import PUBLISHED_MODE, publish_index
from affineur.build._remote import RemoteCache, RemoteEntryRejected
from affineur.build._sweep import sweep_dead_folders, sweep_stale_publishes
from affineur.build._verify import target_tags, verify_wheel, wheel_problems
from affineur.build._wheel import add_build_record, set_build_number

__all__ = [
    "HOST_TOOLS",
    "PUBLISHED_MODE",
    "BuildCache",
    "BuildInputs",
    "BuildJob",
    "BuildKey",
    "BuildRequest",
    "Builder",
    "CacheEntry",
    "Discarded",
    "ExportedWheel",
    "HostTools",
    "RemoteCache",
    "RemoteEntryRejected",
    "add_build_record",
    "build_keys",
    "cancel_run",
    "collect_wheels",
    "compute_key",
    "constraints_text",
    "job_graph",
    "job_main",
    "publish_index",
    "pylock_text",
    "result_error",
    "run_on_worker",
    "set_build_number",
    "sweep_dead_folders",
    "sweep_stale_publishes",
    "target_markers",
    "target_requires_python",
    "target_tags",
    "verify_wheel",
    "wheel_problems",
]
