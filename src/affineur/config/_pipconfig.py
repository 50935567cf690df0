"""The package index pip is configured to use, so corporate mirrors work untouched.

We read pip's configuration the way pip does rather than asking users to repeat
their mirror in affineur's own files: the index a machine is allowed to reach is
usually set once, by an administrator, in ``pip.conf`` or ``PIP_INDEX_URL``.

Only ``index-url`` is taken. ``extra-index-url`` is deliberately ignored: pip merges
all indexes and picks the best version among them, so anyone who can publish a
higher version of an internal name on a public index wins (dependency confusion).
affineur asks its indexes in order and stops at the first that knows a project;
extra indexes belong in a variant's explicit, ordered ``indexes`` list instead.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from affineur.errors import AffineurError

__all__ = ["config_files", "default_index_url", "index_url_from_files"]

# pip lets a command's own section override [global]; affineur downloads, so the
# sections of both commands that fetch distributions apply, [download] winning.
_SECTIONS = ("global", "install", "download")


def default_index_url(environ: Mapping[str, str] | None = None) -> str:
    """``PIP_INDEX_URL``, else ``index-url`` from pip's config files, else pip's default.

    Trailing slashes are stripped, so every caller joins ``/<project>/`` the same way.
    """
    env = os.environ if environ is None else environ
    url = env.get("PIP_INDEX_URL", "").strip()
    if not url:
        url = index_url_from_files(config_files(env)) or _pip_builtin_default()
    return url.rstrip("/")


def config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's configuration files, lowest precedence first.

    pip's own merge order is: global (site-wide) files, then the user's files, then
    the virtual environment's, then ``PIP_CONFIG_FILE``. When ``PIP_CONFIG_FILE``
    names an existing file pip skips the user's files, and when it is the null
    device pip reads no file at all; we follow both rules.
    """
    env_file = environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []
    xdg_dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs.split(os.pathsep) if d]
    files.append(Path("/etc/pip.conf"))
    if not (env_file and Path(env_file).exists()):
        home = Path(environ.get("HOME") or Path.home())
        xdg_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        files += [home / ".pip" / "pip.conf", xdg_home / "pip" / "pip.conf"]
    files.append(Path(sys.prefix) / "pip.conf")
    if env_file:
        files.append(Path(env_file))
    return files


def index_url_from_files(files: Sequence[Path]) -> str | None:
    """The ``index-url`` these files set, with pip's precedence.

    pip first merges each ``section.key`` across files (a later file wins), then lets
    a command section override ``[global]`` whichever file it came from. Empty values
    are ignored, as pip ignores them.
    """
    merged: dict[str, str] = {}
    for path in files:
        parser = _read(path)
        if parser is None:
            continue
        for section in parser.sections():
            for key, value in parser.items(section):
                if key.lower().replace("_", "-") == "index-url" and value.strip():
                    merged[section.lower()] = value.strip()
    for section in reversed(_SECTIONS):
        if section in merged:
            return merged[section]
    return None


def _read(path: Path) -> configparser.RawConfigParser | None:
    if not path.is_file():
        return None
    # Raw: pip does not interpolate, and URLs are full of '%' escapes.
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise AffineurError(
            f"cannot read pip configuration: {exc}",
            file=str(path),
            stage="config",
            hint="fix the file, or set PIP_INDEX_URL to bypass it",
        ) from exc
    return parser


def _pip_builtin_default() -> str:
    # The public index is pip's default, not ours: take it from pip so that its
    # address is written nowhere in this repository.
    try:
        from pip._internal.models.index import PyPI
    except ImportError as exc:
        raise AffineurError(
            "no package index configured and pip is not importable to supply its default",
            stage="config",
            hint="set PIP_INDEX_URL, or index-url in pip.conf, or list indexes in the variant",
        ) from exc
    return str(PyPI.simple_url)
