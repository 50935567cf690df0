"""What a build backend can reach: the network, and the environment it inherits.

A build runs code from an sdist. Stage 2 treats that code as something that must
not fetch anything (everything it may use is in the lock) and must not see the
credentials of the person or CI job running affineur. Two mechanisms do that:

* a network namespace with no interfaces (``unshare --net``), so a backend that
  tries to download fails loudly instead of silently producing a wheel that
  depends on whatever a server returned that day;
* an allowlisted environment, so tokens, index passwords and proxy credentials
  in the parent environment never reach a backend (or its log).
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from affineur.config import expand_env, is_secret_name
from affineur.errors import AffineurError

__all__ = [
    "SOURCE_DATE_EPOCH_FLOOR",
    "build_environment_variables",
    "hook_environment",
    "is_secret_name",
    "isolate_command",
    "network_isolation_available",
    "passed_variables",
]

# Parent variables a build may legitimately need: locale and terminal (tools
# change their output encoding without them), and the knobs users set to steer
# compilers and native build tools. Everything else is dropped: an allowlist
# fails closed when a CI system invents a new credential variable.
_ALLOWED = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TERM",
    "TZ",
    "CC",
    "CXX",
    "CPP",
    "LD",
    "AR",
    "NM",
    "RANLIB",
    "STRIP",
    "FC",
    "F77",
    "F90",
    "CFLAGS",
    "CXXFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "FFLAGS",
    "FCFLAGS",
    "LIBRARY_PATH",
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "LD_LIBRARY_PATH",
    "MAKE",
    "MAKEFLAGS",
    "MAX_JOBS",
    "CMAKE_*",
    "NINJA",
    "PKG_CONFIG",
    "PKG_CONFIG_PATH",
    "PKG_CONFIG_LIBDIR",
    "PKG_CONFIG_SYSROOT_DIR",
    "RUSTFLAGS",
    "RUSTC",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "CUDA_HOME",
    "CUDA_PATH",
    "CUDACXX",
    "ROCM_PATH",
    "HIP_PATH",
    "CCACHE_DIR",
    "CCACHE_BASEDIR",
)

# Proxies are only useful where the network is (stage 1 discovery). They are
# passed on only without user:password in them: a backend has no business
# holding the proxy's credentials.
_PROXIES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)


def _allowed(name: str, value: str, extra: Sequence[str] = ()) -> bool:
    if is_secret_name(name) or name.upper().startswith("PIP_"):
        return False
    if name in _PROXIES:
        # ``no_proxy`` lists hosts; the others are URLs that may carry userinfo.
        return name.lower() == "no_proxy" or "@" not in urlsplit(value).netloc
    return _allow_pattern(tuple(extra)).match(name) is not None


@functools.lru_cache(maxsize=64)
def _allow_pattern(extra: tuple[str, ...]) -> re.Pattern[str]:
    # One expression for every pattern: the environment is filtered for each hook
    # call, and matching every variable against each pattern in turn showed up.
    return re.compile("|".join(fnmatch.translate(p) for p in (*_ALLOWED, *extra)))


def passed_variables(base: Mapping[str, str], pass_env: Sequence[str] = ()) -> dict[str, str]:
    """The parent's variables a build sees: the built-in allow-list plus ``pass_env``
    (names or ``PREFIX_*`` patterns), never a name that looks secret."""
    return {name: value for name, value in base.items() if _allowed(name, value, pass_env)}


SOURCE_DATE_EPOCH_FLOOR = 315532800
"""1980-01-01: the earliest date a zip entry (so a wheel member) can hold.

Every ``SOURCE_DATE_EPOCH`` affineur gives a build, and every date it writes
into a wheel, is at least this; backends clamp too, we do it up front."""


def build_environment_variables(
    *,
    base: Mapping[str, str],
    extra: Mapping[str, str],
    source_date_epoch: int,
    home: Path,
    tmpdir: Path,
    pass_env: Sequence[str] = (),
) -> dict[str, str]:
    """The complete environment of a build hook process.

    ``base`` is the parent environment, filtered through the allowlist (and the
    variant's ``pass_env``); ``extra`` (variant and package ``env``, already
    expanded) is configuration the user wrote on purpose, so it goes on top
    unfiltered. The last layer is not negotiable: it is what makes builds
    reproducible and sealed.
    """
    env = passed_variables(base, pass_env)
    env.update(extra)
    env.update(
        {
            # Backends (setuptools, flit, hatchling, ...) clamp file dates in
            # the wheel to this, which makes the wheel reproducible.
            "SOURCE_DATE_EPOCH": str(source_date_epoch),
            # A fresh home: ~/.netrc, ~/.pypirc, ~/.config/pip, ~/.cargo/credentials
            # of the user running the build are not there to be read.
            "HOME": str(home),
            "TMPDIR": str(tmpdir),
            # Set iteration order leaks into generated files otherwise.
            "PYTHONHASHSEED": "0",
            # User site-packages would add packages that are not in the lock.
            "PYTHONNOUSERSITE": "1",
            # A backend that shells out to pip must not reach an index, nor read
            # a system pip.conf that could point it at one (or at find-links).
            "PIP_NO_INDEX": "1",
            "PIP_CONFIG_FILE": os.devnull,
        }
    )
    return env


def hook_environment(
    *,
    base: Mapping[str, str],
    package_env: Mapping[str, str],
    name: str,
    version: str,
    source_date_epoch: int,
    home: Path,
    tmpdir: Path,
    pass_env: Sequence[str] = (),
) -> dict[str, str]:
    """The environment of one package's hooks, the same at discovery and at build.

    The package's ``env`` setting is expanded first (``${version}``, ``${name}``,
    ``${VAR}`` from the parent variables the build is given anyway), then sealed
    as above. Expanding only passed variables keeps ``${AWS_SECRET_ACCESS_KEY}``
    in an override from smuggling a secret past the filter.
    """
    passed = passed_variables(base, pass_env)
    for key, template in package_env.items():
        for ref in sorted(_references(template)):
            if ref in base and ref not in passed and ref not in package_env:
                why = (
                    "its name looks like a secret, which builds never see"
                    if is_secret_name(ref) or ref.upper().startswith("PIP_")
                    else "builds see only the built-in list and the variant's pass_env"
                )
                raise AffineurError(
                    f"env.{key} uses ${{{ref}}}, which is not passed to builds: {why}",
                    package=name,
                    version=version,
                    key_path=("env", key),
                    stage="config",
                    hint=(
                        "builds run without credentials: remove the reference"
                        if is_secret_name(ref)
                        else f"add {ref} to 'pass_env' in the variant"
                    ),
                )
    extra = expand_env(package_env, version=version, name=name, base_env=passed)
    return build_environment_variables(
        base=base,
        extra=extra,
        source_date_epoch=source_date_epoch,
        home=home,
        tmpdir=tmpdir,
        pass_env=pass_env,
    )


def _references(template: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", template.replace("$$", "")))


def _probe(argv: Sequence[str]) -> bool:
    try:
        done = subprocess.run(
            [*argv, "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@functools.cache
def _isolation_prefix() -> tuple[str, ...] | None:
    """The unshare invocation that works here, or None.

    Root can create a network namespace directly. Anyone else needs a user
    namespace first (``--map-root-user``), which some kernels or container
    runtimes forbid; then isolation is unavailable. The absolute path matters:
    the hook's environment is filtered, so its PATH may not find ``unshare``.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    candidates: list[tuple[str, ...]] = [(unshare, "--net")] if os.geteuid() == 0 else []
    candidates.append((unshare, "--map-root-user", "--net"))
    for prefix in candidates:
        if _probe(prefix):
            return prefix
    return None


def network_isolation_available() -> bool:
    """Whether commands can be run without network access (probed once per process)."""
    return _isolation_prefix() is not None


def isolate_command(argv: Sequence[str], *, network: bool) -> list[str]:
    """``argv``, run without network access unless ``network`` is True.

    The new namespace has not even a loopback interface up, which is fine: a
    build needs no sockets at all.
    """
    if network:
        return list(argv)
    prefix = _isolation_prefix()
    if prefix is None:
        raise AffineurError(
            "network isolation was requested but 'unshare --net' does not work here",
            stage="isolation",
            hint=(
                "install util-linux and allow user namespaces, or disable isolation "
                "in the variant with 'network_isolation: false'"
            ),
        )
    return [*prefix, *argv]
