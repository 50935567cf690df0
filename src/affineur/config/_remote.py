"""Where builds are shared and where they run: the remote cache and the executor settings.

Both are build-only settings: they change where a wheel is found or built,
never what it contains, so neither enters a build key.

A variant names them in its file (``remote_cache:``, ``executor:``); the
environment names them for every variant at once, which is how CI jobs differ
from a laptop without editing the repository:

``AFFINEUR_REMOTE_CACHE=URL``
    the remote cache of every variant, in place of the one it names, if any.
``AFFINEUR_REMOTE_CACHE_MODE=read-only|read-write|off``
    overrides every remote cache's mode (pull-request jobs read, the main
    branch writes; ``off`` ignores the remote cache).
``AFFINEUR_EXECUTOR=local|dask://host:8786``
    overrides every variant's executor (``doit --executor`` overrides both).

Credentials never appear here: the storage library finds them where it always
does (environment variables, ``~/.aws/credentials``, instance roles, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from affineur.errors import AffineurError

__all__ = [
    "CACHE_ENV",
    "CACHE_MODE_ENV",
    "EXECUTOR_ENV",
    "Executor",
    "RemoteCacheSetting",
    "RemoteMode",
    "effective_executor",
    "effective_remote_cache",
    "executor_problem",
    "remote_cache_problems",
]

CACHE_ENV = "AFFINEUR_REMOTE_CACHE"
CACHE_MODE_ENV = "AFFINEUR_REMOTE_CACHE_MODE"
EXECUTOR_ENV = "AFFINEUR_EXECUTOR"

RemoteMode = Literal["read-write", "read-only"]
_MODES = ("read-write", "read-only")

# Option names that carry secrets in fsspec's S3, GCS and Azure filesystems. A
# secret written into a variant file would be committed, and echoed by tools.
_SECRET = re.compile(
    r"(^|_)(key|secret|token|password|passwd|credentials?|sas_token|connection_string)$",
    re.IGNORECASE,
)
_READ_ONLY_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class RemoteCacheSetting:
    url: str
    mode: RemoteMode = "read-write"
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    origin: str = ""
    """Where the setting came from (a variant file or an environment variable), for messages."""

    @property
    def writable(self) -> bool:
        return self.mode == "read-write"


def _secret_options(options: Mapping[str, Any], path: tuple[str, ...] = ()) -> list[str]:
    found = []
    for name, value in options.items():
        here = (*path, str(name))
        if _SECRET.search(str(name)):
            found.append(".".join(here))
        elif isinstance(value, Mapping):
            found += _secret_options(value, here)
    return found


def remote_cache_problems(
    url: str, mode: str | None, options: Mapping[str, Any]
) -> list[tuple[tuple[str, ...], str, str]]:
    """What is wrong with a remote cache setting: (key path, problem, hint) triples."""
    problems: list[tuple[tuple[str, ...], str, str]] = []
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        problems.append(
            (
                ("url",),
                "the remote cache URL holds credentials",
                "remove them: the storage library reads credentials from its usual sources "
                "(environment, ~/.aws/credentials, ~/.netrc, instance roles)",
            )
        )
    if parts.scheme in _READ_ONLY_SCHEMES and mode == "read-write":
        problems.append(
            (
                ("mode",),
                f"an {parts.scheme}:// remote cache is a read-only mirror",
                "use mode: read-only, or the storage's own URL (s3://, gs://, file://) to write",
            )
        )
    for name in _secret_options(options):
        problems.append(
            (
                ("options", *name.split(".")),
                f"remote cache option {name!r} is a credential",
                "remove it: credentials come from the storage library's usual sources "
                "(environment, ~/.aws/credentials, instance roles), never from the repository",
            )
        )
    return problems


def _setting(url: str, mode: str | None, options: Mapping[str, Any], origin: str) -> (
    RemoteCacheSetting
):  # fmt: skip
    scheme = urlsplit(url).scheme
    chosen = mode or ("read-only" if scheme in _READ_ONLY_SCHEMES else "read-write")
    return RemoteCacheSetting(
        url, cast(RemoteMode, chosen), MappingProxyType(dict(options)), origin
    )


def effective_remote_cache(
    variant_setting: Mapping[str, Any] | None,
    environ: Mapping[str, str],
    *,
    origin: str = "",
) -> RemoteCacheSetting | None:
    """The remote cache one variant uses in this environment, or None.

    ``variant_setting`` is the variant's validated ``remote_cache`` mapping. The
    environment wins over the file, as the command line wins over both for the
    executor: a CI job points every variant at the cache near its runners, or
    makes them read-only, without editing the repository.
    """
    forced = environ.get(CACHE_MODE_ENV, "").strip().lower() or None
    if forced is not None and forced not in (*_MODES, "off"):
        raise AffineurError(
            f"{CACHE_MODE_ENV}={environ[CACHE_MODE_ENV]}: expected read-only, read-write or off",
            stage="config",
        )
    if forced == "off":
        return None
    if url := environ.get(CACHE_ENV, "").strip():
        if not re.match(r"^[a-z][a-z0-9+.-]*://", url):
            raise AffineurError(
                f"{CACHE_ENV} is not a URL",
                hint="for example s3://bucket/prefix, gs://bucket/prefix or file:///shared/path",
                stage="config",
            )
        setting = _setting(url, None, {}, CACHE_ENV)
    elif variant_setting is not None:
        setting = _setting(
            str(variant_setting["url"]),
            variant_setting.get("mode"),
            variant_setting.get("options") or {},
            origin,
        )
    else:
        return None
    if forced is not None:
        setting = RemoteCacheSetting(
            setting.url, cast(RemoteMode, forced), setting.options, setting.origin
        )
    problems = remote_cache_problems(setting.url, setting.mode, setting.options)
    if problems:
        _, message, hint = problems[0]
        where = setting.origin if setting.origin == CACHE_ENV else f"{setting.origin} remote_cache"
        raise AffineurError(f"{where}: {message}", hint=hint, stage="config")
    return setting


# --- executor ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Executor:
    """Where build actions run: this machine, or a Dask scheduler at ``address``."""

    kind: Literal["local", "dask"] = "local"
    address: str = ""

    @property
    def url(self) -> str:
        return "local" if self.kind == "local" else f"dask://{self.address}"


_DASK = re.compile(r"^dask://([^/\s]+)$")


def executor_problem(text: str) -> str | None:
    if text == "local" or _DASK.match(text):
        return None
    return f"executor {text!r} is neither 'local' nor dask://host:port"


def effective_executor(
    variant_setting: str | None,
    environ: Mapping[str, str],
    command_line: str | None = None,
    *,
    origins: Sequence[str] = ("--executor", EXECUTOR_ENV, "variant"),
) -> Executor:
    """The command line wins over the environment, which wins over the variant."""
    env = environ.get(EXECUTOR_ENV, "").strip() or None
    for text, origin in zip((command_line, env, variant_setting), origins, strict=True):
        if not text:
            continue
        problem = executor_problem(text)
        if problem:
            raise AffineurError(
                f"{origin}: {problem}",
                hint="use --executor dask://scheduler-host:8786, or local",
                stage="config",
            )
        found = _DASK.match(text)
        return Executor("dask", found.group(1)) if found else Executor()
    return Executor()
