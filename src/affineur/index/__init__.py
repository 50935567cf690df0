"""Package indexes: dist files, the simple-API client, upstream wheels, other sources.

Also the store of downloaded files, which both stages read.
"""

from typing import TYPE_CHECKING

from affineur._lazy import lazy_exports

if TYPE_CHECKING:
    from affineur.index._attestation import (
        AttestationSource,
        attested_by,
        check_attestation,
        parse_provenance,
    )
    from affineur.index._client import ACCEPT, IndexClient
    from affineur.index._distfile import DistFile, make_file
    from affineur.index._files import SDIST_SUFFIXES, check_filename, sha256_file
    from affineur.index._git import GitSource, git_archive_name, is_local_repository
    from affineur.index._pages import parse_html_page, parse_json_page
    from affineur.index._plugin import PluginFetcher, check_plugin_archive, plugin_archive_name
    from affineur.index._sources import UrlSource, source_url
    from affineur.index._store import Fetcher, SdistStore
    from affineur.index._upstream import UpstreamWheels
    from affineur.index._urls import redact_url
    from affineur.index._usable import best_wheel, python_allows, usable_files
    from affineur.index._wheelmeta import (
        dist_info_dir,
        open_wheel,
        read_metadata,
        record_hash,
        requires_dist,
    )

# Each name loads its module on first use (see affineur._lazy).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "_attestation": (
            "AttestationSource",
            "attested_by",
            "check_attestation",
            "parse_provenance",
        ),
        "_client": ("ACCEPT", "IndexClient"),
        "_distfile": ("DistFile", "make_file"),
        "_files": ("SDIST_SUFFIXES", "check_filename", "sha256_file"),
        "_git": ("GitSource", "git_archive_name", "is_local_repository"),
        "_pages": ("parse_html_page", "parse_json_page"),
        "_plugin": ("PluginFetcher", "check_plugin_archive", "plugin_archive_name"),
        "_sources": ("UrlSource", "source_url"),
        "_store": ("Fetcher", "SdistStore"),
        "_upstream": ("UpstreamWheels",),
        "_urls": ("redact_url",),
        "_usable": ("best_wheel", "python_allows", "usable_files"),
        "_wheelmeta": (
            "dist_info_dir",
            "open_wheel",
            "read_metadata",
            "record_hash",
            "requires_dist",
        ),
    },
)

__all__ = [
    "ACCEPT",
    "SDIST_SUFFIXES",
    "AttestationSource",
    "DistFile",
    "Fetcher",
    "GitSource",
    "IndexClient",
    "PluginFetcher",
    "SdistStore",
    "UpstreamWheels",
    "UrlSource",
    "attested_by",
    "best_wheel",
    "check_attestation",
    "check_filename",
    "check_plugin_archive",
    "dist_info_dir",
    "git_archive_name",
    "is_local_repository",
    "make_file",
    "open_wheel",
    "parse_html_page",
    "parse_json_page",
    "parse_provenance",
    "plugin_archive_name",
    "python_allows",
    "read_metadata",
    "record_hash",
    "redact_url",
    "requires_dist",
    "sha256_file",
    "source_url",
    "usable_files",
]
