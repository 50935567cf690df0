"""Stage 2: build one locked package into the content-addressed cache, and publish indexes."""

from affineur.build._builder import Builder, BuildRequest, patch_name
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
from affineur.build._provenance import (
    PROVENANCE_SUFFIX,
    BuildFacts,
    SignedBy,
    check_published,
    host_tools,
    load_public_keys,
    provenance_statement,
    read_provenance,
    sign_statement,
    signing_key_id,
)
from affineur.build._publish import PUBLISHED_MODE, publish_index
from affineur.build._remote import RemoteCache, RemoteEntryRejected
from affineur.build._sbom import SBOM_MEMBER, BuiltFrom, EnvWheel, sbom_document, sbom_key_input
from affineur.build._sweep import sweep_dead_folders, sweep_stale_publishes
from affineur.build._verify import target_tags, verify_wheel, wheel_problems
from affineur.build._wheel import BUILD_RECORD, add_build_record, finish_wheel, set_build_number

__all__ = [
    "BUILD_RECORD",
    "HOST_TOOLS",
    "PROVENANCE_SUFFIX",
    "PUBLISHED_MODE",
    "SBOM_MEMBER",
    "BuildCache",
    "BuildFacts",
    "BuildInputs",
    "BuildJob",
    "BuildKey",
    "BuildRequest",
    "Builder",
    "BuiltFrom",
    "CacheEntry",
    "Discarded",
    "EnvWheel",
    "ExportedWheel",
    "HostTools",
    "RemoteCache",
    "RemoteEntryRejected",
    "SignedBy",
    "add_build_record",
    "build_keys",
    "cancel_run",
    "check_published",
    "collect_wheels",
    "compute_key",
    "constraints_text",
    "finish_wheel",
    "host_tools",
    "job_graph",
    "job_main",
    "load_public_keys",
    "patch_name",
    "provenance_statement",
    "publish_index",
    "pylock_text",
    "read_provenance",
    "result_error",
    "run_on_worker",
    "sbom_document",
    "sbom_key_input",
    "set_build_number",
    "sign_statement",
    "signing_key_id",
    "sweep_dead_folders",
    "sweep_stale_publishes",
    "target_markers",
    "target_requires_python",
    "target_tags",
    "verify_wheel",
    "wheel_problems",
]
