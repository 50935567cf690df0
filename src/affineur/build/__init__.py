"""Stage 2: build one locked package into the content-addressed cache, and publish indexes."""

from typing import TYPE_CHECKING

from affineur._lazy import lazy_exports

if TYPE_CHECKING:
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
    from affineur.build._publish import PUBLISHED_MODE, index_holds, publish_index
    from affineur.build._remote import RemoteCache, RemoteEntryRejected
    from affineur.build._reproduce import (
        MemberDiff,
        VariedRunner,
        compare_wheels,
        diffoscope_report,
        varied_environment,
    )
    from affineur.build._sbom import SBOM_MEMBER, BuiltFrom, EnvWheel, sbom_document, sbom_key_input
    from affineur.build._sweep import sweep_dead_folders, sweep_stale_publishes
    from affineur.build._verify import target_tags, verify_wheel, wheel_problems
    from affineur.build._wheel import BUILD_RECORD, add_build_record, finish_wheel, set_build_number

# Each name loads its module on first use (see affineur._lazy).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "_builder": ("Builder", "BuildRequest", "patch_name"),
        "_cache": ("BuildCache", "CacheEntry", "Discarded"),
        "_export": (
            "ExportedWheel",
            "collect_wheels",
            "constraints_text",
            "pylock_text",
            "target_markers",
            "target_requires_python",
        ),
        "_hosttools": ("HOST_TOOLS", "HostTools"),
        "_job": (
            "BuildJob",
            "cancel_run",
            "job_graph",
            "job_main",
            "result_error",
            "run_on_worker",
        ),
        "_key": ("BuildInputs", "BuildKey", "build_keys", "compute_key"),
        "_provenance": (
            "PROVENANCE_SUFFIX",
            "BuildFacts",
            "SignedBy",
            "check_published",
            "host_tools",
            "load_public_keys",
            "provenance_statement",
            "read_provenance",
            "sign_statement",
            "signing_key_id",
        ),
        "_publish": ("PUBLISHED_MODE", "index_holds", "publish_index"),
        "_remote": ("RemoteCache", "RemoteEntryRejected"),
        "_reproduce": (
            "MemberDiff",
            "VariedRunner",
            "compare_wheels",
            "diffoscope_report",
            "varied_environment",
        ),
        "_sbom": ("SBOM_MEMBER", "BuiltFrom", "EnvWheel", "sbom_document", "sbom_key_input"),
        "_sweep": ("sweep_dead_folders", "sweep_stale_publishes"),
        "_verify": ("target_tags", "verify_wheel", "wheel_problems"),
        "_wheel": ("BUILD_RECORD", "add_build_record", "finish_wheel", "set_build_number"),
    },
)

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
    "MemberDiff",
    "RemoteCache",
    "RemoteEntryRejected",
    "SignedBy",
    "VariedRunner",
    "add_build_record",
    "build_keys",
    "cancel_run",
    "check_published",
    "collect_wheels",
    "compare_wheels",
    "compute_key",
    "constraints_text",
    "diffoscope_report",
    "finish_wheel",
    "host_tools",
    "index_holds",
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
    "varied_environment",
    "verify_wheel",
    "wheel_problems",
]
