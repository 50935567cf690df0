"""Stage 0: the repository's own files (collections, variants, overrides), read and checked."""

from typing import TYPE_CHECKING

from affineur._lazy import lazy_exports

if TYPE_CHECKING:
    from affineur.config._edit import add_requirement, remove_requirement
    from affineur.config._fromager import collection_text, import_fromager, parse_fromager
    from affineur.config._models import (
        TARGET_MARKERS,
        Collection,
        Evidence,
        PackageOverride,
        Project,
        SandboxChoice,
        SandboxSetting,
        Variant,
        target_environment,
    )
    from affineur.config._patches import find_patches, patch_hashes
    from affineur.config._pipconfig import config_files, default_index_url, index_url_from_files
    from affineur.config._project import load_project
    from affineur.config._remote import (
        CACHE_ENV,
        CACHE_MODE_ENV,
        EXECUTOR_ENV,
        Executor,
        RemoteCacheSetting,
        RemoteMode,
        effective_executor,
        effective_remote_cache,
    )
    from affineur.config._schema import did_you_mean, schemas_dir, validate
    from affineur.config._secrets import is_secret_name
    from affineur.config._settings import (
        BUILD_ONLY_FIELDS,
        DEFAULT_BUILD_TIMEOUT,
        BuildRequiresOverride,
        Settings,
        effective_settings,
        expand_env,
        expand_template,
        lock_meaning,
        source_env,
    )

# Each name loads its module on first use (see affineur._lazy).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "_edit": ("add_requirement", "remove_requirement"),
        "_fromager": ("collection_text", "import_fromager", "parse_fromager"),
        "_patches": ("find_patches", "patch_hashes"),
        "_pipconfig": ("config_files", "default_index_url", "index_url_from_files"),
        "_models": (
            "TARGET_MARKERS",
            "Collection",
            "Evidence",
            "PackageOverride",
            "Project",
            "SandboxChoice",
            "SandboxSetting",
            "Variant",
            "target_environment",
        ),
        "_project": ("load_project",),
        "_remote": (
            "CACHE_ENV",
            "CACHE_MODE_ENV",
            "EXECUTOR_ENV",
            "Executor",
            "RemoteCacheSetting",
            "RemoteMode",
            "effective_executor",
            "effective_remote_cache",
        ),
        "_schema": ("did_you_mean", "schemas_dir", "validate"),
        "_secrets": ("is_secret_name",),
        "_settings": (
            "BUILD_ONLY_FIELDS",
            "DEFAULT_BUILD_TIMEOUT",
            "BuildRequiresOverride",
            "Settings",
            "effective_settings",
            "expand_env",
            "expand_template",
            "lock_meaning",
            "source_env",
        ),
    },
)

__all__ = [
    "BUILD_ONLY_FIELDS",
    "CACHE_ENV",
    "CACHE_MODE_ENV",
    "DEFAULT_BUILD_TIMEOUT",
    "EXECUTOR_ENV",
    "TARGET_MARKERS",
    "BuildRequiresOverride",
    "Collection",
    "Evidence",
    "Executor",
    "PackageOverride",
    "Project",
    "RemoteCacheSetting",
    "RemoteMode",
    "SandboxChoice",
    "SandboxSetting",
    "Settings",
    "Variant",
    "add_requirement",
    "collection_text",
    "config_files",
    "default_index_url",
    "did_you_mean",
    "effective_executor",
    "effective_remote_cache",
    "effective_settings",
    "expand_env",
    "expand_template",
    "find_patches",
    "import_fromager",
    "index_url_from_files",
    "is_secret_name",
    "load_project",
    "lock_meaning",
    "parse_fromager",
    "patch_hashes",
    "remove_requirement",
    "schemas_dir",
    "source_env",
    "target_environment",
    "validate",
]
