"""A site plugin's ``fetch`` step as a store :class:`~affineur.index.Fetcher`.

The lock recorded the plugin's archive by name and hash; wherever the store
lacks it, the plugin is asked again and the store holds the result to that
hash, exactly as a file found again on an index.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import NormalizedName

from affineur.errors import AffineurError
from affineur.hooks import FetchRequest, PluginHooks
from affineur.index._distfile import DistFile, make_file
from affineur.index._files import SDIST_SUFFIXES
from affineur.index._store import Fetcher

__all__ = ["PluginFetcher", "check_plugin_archive", "plugin_archive_name"]


def plugin_archive_name(plugin: str, name: str, version: str, filename: str, sha256: str) -> str:
    """The store's name for a plugin's archive: never the name of the file it replaces.

    A plugin that changes an sdist usually keeps its name; the store, keyed by
    name, would then hold two files under one name (with and without the
    plugin, in two variants). A local version label of the plugin and the hash
    sets it apart and still reads as this package's version.
    """
    suffix = next(s for s in SDIST_SUFFIXES if filename.lower().endswith(s))
    label = re.sub(r"[^a-z0-9]", "", plugin.lower()) or "plugin"
    return f"{name.replace('-', '_')}-{version}+{label}.{sha256[:12]}{suffix}"


def check_plugin_archive(
    hooks: PluginHooks, name: NormalizedName, version: str, path: Path
) -> None:
    """The plugin's file must exist and be named as an sdist of this name and version."""
    found = make_file(name, path.name, path.as_uri()) if path.is_file() else None
    if found is None or found.kind != "sdist" or str(found.version) != version:
        raise AffineurError(
            f"plugin {hooks.name}: fetch returned {path}, not an sdist of {name} {version}",
            package=name,
            version=version,
            stage="download",
            key_path=("plugin",),
            hint=f"return a file named like {name.replace('-', '_')}-{version}.tar.gz",
        )


def _unlabelled(filename: str) -> str:
    """``name-1.0+label.hash.tar.gz`` -> ``name-1.0.tar.gz`` (other names unchanged)."""
    return re.sub(r"\+[a-z0-9]+\.[0-9a-f]{12}(?=\.(tar|zip|tgz))", "", filename)


@dataclass(frozen=True)
class PluginFetcher:
    hooks: PluginHooks
    project: NormalizedName
    version: str
    fallback: Fetcher
    """How the file is fetched without the plugin (its ``default()``)."""

    def find_file(self, project: str, filename: str) -> DistFile:
        return DistFile(self.project, filename, f"plugin:{self.hooks.name}", "sdist", None)

    def download(self, file: DistFile, dest: Path) -> Path:
        with tempfile.TemporaryDirectory(prefix=".plugin-", dir=dest) as tmp:

            def default() -> Path:
                # The file the plugin started from, under its own name and hash (the
                # index's): only what the plugin returns is held to the lock's.
                found = self.fallback.find_file(self.project, _unlabelled(file.filename))
                return self.fallback.download(found, Path(tmp))

            got = self.hooks.fetch(FetchRequest(self.project, self.version, Path(tmp), default))
            check_plugin_archive(self.hooks, self.project, self.version, got)
            # Named as the lock names it; the store then holds it to the lock's hash.
            part = Path(tmp) / ".part"
            shutil.copyfile(got, part)
            return part.replace(dest / file.filename)
