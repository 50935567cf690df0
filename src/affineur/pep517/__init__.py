"""Running PEP 517 build backends: unpacking, environments, isolation and the hook runner.

Shared by discovery (stage 1) and building (stage 2), so neither stage imports the other.
"""

from typing import TYPE_CHECKING

from affineur._lazy import lazy_exports

if TYPE_CHECKING:
    from affineur.pep517._environment import EnvironmentStore
    from affineur.pep517._hooks import HookCaller
    from affineur.pep517._interpreter import (
        Interpreter,
        find_interpreter,
        interpreter_of,
        running_interpreter,
    )
    from affineur.pep517._isolation import (
        SOURCE_DATE_EPOCH_FLOOR,
        build_environment_variables,
        hook_environment,
        isolate_command,
        network_isolation_available,
    )
    from affineur.pep517._processes import Runner, kill_running_hooks, run_hook_process
    from affineur.pep517._pyproject import (
        LEGACY_BUILD_SYSTEM,
        BuildSystem,
        effective_build_system,
        is_empty,
        override_requires,
        read_build_system,
        write_build_system,
    )
    from affineur.pep517._rust import (
        CrateStore,
        RustBuild,
        RustToolchain,
        cargo_home,
        crates_registry,
        pack_tree,
        rust_build,
        rust_toolchain,
        tree_hash,
    )
    from affineur.pep517._rustup import rustup_toolchain_bin
    from affineur.pep517._sandbox import (
        Confinement,
        SandboxKind,
        available_sandboxes,
        choose_sandbox,
        confine,
    )
    from affineur.pep517._tools import (
        HOOK_TOOLS,
        ToolStates,
        changed_tools,
        describe_tool,
        host_tool_states,
        probe_version,
        tool_state,
    )
    from affineur.pep517._unpack import (
        Unpacked,
        UnpackLimits,
        read_pkg_info,
        safe_extract,
        unpack_limits,
        unpack_sdist,
    )
    from affineur.pep517._venv import BuildEnvironment

# Each name loads its module on first use (see affineur._lazy).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "_environment": ("EnvironmentStore",),
        "_hooks": ("HookCaller",),
        "_processes": ("Runner", "kill_running_hooks", "run_hook_process"),
        "_interpreter": (
            "Interpreter",
            "find_interpreter",
            "interpreter_of",
            "running_interpreter",
        ),
        "_isolation": (
            "SOURCE_DATE_EPOCH_FLOOR",
            "build_environment_variables",
            "hook_environment",
            "isolate_command",
            "network_isolation_available",
        ),
        "_pyproject": (
            "LEGACY_BUILD_SYSTEM",
            "BuildSystem",
            "effective_build_system",
            "is_empty",
            "override_requires",
            "pack_tree",
            "read_build_system",
            "write_build_system",
        ),
        "_rust": (
            "CrateStore",
            "RustBuild",
            "RustToolchain",
            "cargo_home",
            "crates_registry",
            "pack_tree",
            "rust_build",
            "rust_toolchain",
            "tree_hash",
        ),
        "_rustup": ("rustup_toolchain_bin",),
        "_sandbox": (
            "Confinement",
            "SandboxKind",
            "available_sandboxes",
            "choose_sandbox",
            "confine",
        ),
        "_tools": (
            "HOOK_TOOLS",
            "ToolStates",
            "changed_tools",
            "describe_tool",
            "host_tool_states",
            "probe_version",
            "tool_state",
        ),
        "_unpack": (
            "UnpackLimits",
            "Unpacked",
            "read_pkg_info",
            "safe_extract",
            "unpack_limits",
            "unpack_sdist",
        ),
        "_venv": ("BuildEnvironment",),
    },
)

__all__ = [
    "HOOK_TOOLS",
    "LEGACY_BUILD_SYSTEM",
    "SOURCE_DATE_EPOCH_FLOOR",
    "BuildEnvironment",
    "BuildSystem",
    "Confinement",
    "CrateStore",
    "EnvironmentStore",
    "HookCaller",
    "Interpreter",
    "Runner",
    "RustBuild",
    "RustToolchain",
    "SandboxKind",
    "ToolStates",
    "UnpackLimits",
    "Unpacked",
    "available_sandboxes",
    "build_environment_variables",
    "cargo_home",
    "changed_tools",
    "choose_sandbox",
    "confine",
    "crates_registry",
    "describe_tool",
    "effective_build_system",
    "find_interpreter",
    "hook_environment",
    "host_tool_states",
    "interpreter_of",
    "is_empty",
    "isolate_command",
    "kill_running_hooks",
    "network_isolation_available",
    "override_requires",
    "pack_tree",
    "probe_version",
    "read_build_system",
    "read_pkg_info",
    "run_hook_process",
    "running_interpreter",
    "rust_build",
    "rust_toolchain",
    "rustup_toolchain_bin",
    "safe_extract",
    "tool_state",
    "tree_hash",
    "unpack_limits",
    "unpack_sdist",
    "write_build_system",
]
