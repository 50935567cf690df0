"""Rust in sdists: crates vendored at lock time, cargo offline at build time.

Most large trees hold Rust extensions (cryptography, pydantic-core, orjson …)
whose sdists name their crates in a Cargo.lock but do not ship them. Stage 2
has no network, so stage 1 fetches them: ``cargo vendor --locked`` (cargo checks
every .crate against the checksum Cargo.lock records) into a tree stored by its
own hash beside the sdists, ``build/sdists/crates/<tree sha256>/``, holding
``vendor/`` and the source replacement cargo printed. The lock records the
tree's hash and the crates; every build hashes the tree again before cargo
reads it, and runs cargo with a CARGO_HOME of its own whose config replaces
every source with that tree and sets ``net.offline``.

Builds get an empty HOME and a sandbox without the home directory, so a rustup
toolchain (``~/.rustup``, ``~/.cargo/bin``) would be invisible: the toolchain's
own directory is found here, mounted read-only, and its ``bin`` put first on
the build's PATH (the rustup proxies are not needed, nor is rustup's config).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import tomlkit

from affineur import graph as g
from affineur.atomic import write_atomic
from affineur.errors import AffineurError
from affineur.pep517._rustup import rustup_toolchain_bin
from affineur.pep517._unpack import UnpackLimits, archive_mentions, safe_extract

__all__ = [
    "CrateStore",
    "RustToolchain",
    "cargo_home",
    "crates_registry",
    "rust_toolchain",
    "tree_hash",
]

_CONFIG = "cargo-config.toml"
_VENDOR = "vendor"
_PLACEHOLDER = "@vendor@"
_VENDOR_TIMEOUT = 1800.0
# Folders whose Cargo.lock files belong to something else than the sdist's own crates.
_SKIPPED_DIRS = frozenset({"target", "vendor", ".git", "node_modules"})


def crates_registry(url: str) -> str:
    """The variant's ``crates_index`` as cargo names a registry (a bare URL is sparse)."""
    return url if url.startswith(("sparse+", "registry+")) else f"sparse+{url}"


def tree_hash(root: Path) -> str:
    """sha256 over every file below ``root``: its path, whether it is executable, its sha256.

    Cargo reads the files, so the hash covers exactly those; folders and dates do
    not matter to it, and are left out so a copy of the tree hashes the same.
    """
    lines = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            lines.append(f"{rel}\0link\0{path.readlink()}")
        elif path.is_file():
            mode = "x" if os.access(path, os.X_OK) else "-"
            digest = hashlib.sha256()
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            lines.append(f"{rel}\0{mode}\0{digest.hexdigest()}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _members(archive: Path) -> list[str]:
    """The archive's member names; none for a damaged one, which unpacking reports later."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                return zf.namelist()
        with tarfile.open(archive) as tf:
            return tf.getnames()
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile):
        return []


def _skipped(parts: Iterable[str]) -> bool:
    return any(p in _SKIPPED_DIRS or p.startswith(".") for p in parts)


def _sourced_crates(name: str, lock: Path) -> list[g.Crate]:
    """The crates of one Cargo.lock that come from a registry or git (not the project's own)."""
    try:
        data = tomllib.loads(lock.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AffineurError(
            f"its {lock.name} cannot be read: {exc}", package=name, stage="download"
        ) from exc
    crates = []
    for package in data.get("package", ()):
        if isinstance(package, dict) and package.get("source"):
            checksum = package.get("checksum")
            crates.append(g.Crate(str(package["name"]), str(package["version"]), checksum))
    return crates


def _vendored_already(source: Path) -> bool:
    """An sdist that ships its crates says so in its own cargo config (source replacement)."""
    for config in [*source.glob(".cargo/config*"), *source.glob("*/.cargo/config*")]:
        with contextlib.suppress(OSError):
            if "replace-with" in config.read_text(encoding="utf-8", errors="replace"):
                return True
    return False


class CrateStore:
    """Vendored crate trees, by the hash of their content, beside the sdists.

    ``root`` is ``build/sdists/crates``. What one sdist needed is remembered by
    the sdist's sha256 and the registry, so a re-lock vendors nothing again.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def tree(self, sha256: str) -> Path:
        return self.root / sha256

    def _memo(self, sdist_sha256: str, registry: str | None) -> Path:
        which = hashlib.sha256((registry or "").encode()).hexdigest()[:16]
        return self.root / "by-sdist" / f"{sdist_sha256}-{which}.json"

    def vendor(
        self,
        name: str,
        sdist: Path,
        sdist_sha256: str,
        *,
        registry: str | None,
        limits: UnpackLimits | None = None,
    ) -> g.VendoredCrates | None:
        """The crates ``sdist`` needs, vendored here (network); None when it needs none."""
        memo = self._memo(sdist_sha256, registry)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            known = json.loads(memo.read_text(encoding="utf-8"))
            if known is None:
                return None
            found = g.crates_from_data(known)
            if found is not None and self.tree(found.sha256).is_dir():
                return found
        # Most sdists hold no Rust: a scan of the bytes proves it without listing the
        # members, and listing them is far cheaper than unpacking.
        if not archive_mentions(sdist, b"Cargo.lock", limits):
            self._remember(memo, None)
            return None
        locks = [m for m in _members(sdist) if PurePosixPath(m).name == "Cargo.lock"]
        if not locks:
            self._remember(memo, None)
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".vendor-", dir=self.root))
        try:
            source = safe_extract(sdist, scratch / "src", limits)
            vendored = self._vendor_tree(name, source, scratch, registry)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self._remember(memo, vendored)
        return vendored

    def _remember(self, memo: Path, vendored: g.VendoredCrates | None) -> None:
        data = None
        if vendored is not None:
            data = g.crates_data(vendored)
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(memo, json.dumps(data, sort_keys=True) + "\n")

    def _vendor_tree(
        self, name: str, source: Path, scratch: Path, registry: str | None
    ) -> g.VendoredCrates | None:
        manifests: list[Path] = []
        crates: set[g.Crate] = set()
        for lock in sorted(source.rglob("Cargo.lock")):
            if _skipped(lock.relative_to(source).parts[:-1]):
                continue
            needed = _sourced_crates(name, lock)
            if needed and lock.with_name("Cargo.toml").is_file():
                manifests.append(lock.with_name("Cargo.toml"))
                crates.update(needed)
        if not manifests or _vendored_already(source):
            return None
        staging = scratch / "tree"
        staging.mkdir()
        config = _cargo_vendor(name, manifests, staging / _VENDOR, registry)
        (staging / _CONFIG).write_text(config, encoding="utf-8")
        sha = tree_hash(staging)
        final = self.tree(sha)
        if not final.exists():
            with contextlib.suppress(OSError):  # another lock made the same tree meanwhile
                staging.rename(final)
        return g.VendoredCrates(sha, tuple(sorted(crates)))

    def unpack(self, archive: Path, sha256: str) -> Path:
        """Put the tree :func:`pack_tree` archived in place (:meth:`verified` checks it)."""
        final = self.tree(sha256)
        if final.is_dir():
            return final
        self.root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".unpack-", dir=self.root))
        try:
            top = safe_extract(archive, scratch)
            with contextlib.suppress(OSError):
                top.rename(final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return final

    def verified(self, name: str, vendored: g.VendoredCrates) -> Path:
        """The tree the lock names, checked byte for byte against its hash (no network)."""
        tree = self.tree(vendored.sha256)
        if not tree.is_dir():
            raise AffineurError(
                f"the vendored crates {vendored.sha256[:16]} are not in {self.root}",
                package=name,
                stage="download",
                hint="run 'doit download' (or the lock) with network access first",
            )
        actual = tree_hash(tree)
        if actual != vendored.sha256:
            raise AffineurError(
                f"{tree}: the vendored crates hash to {actual}, the lock says {vendored.sha256}",
                package=name,
                stage="hash",
                hint=f"delete {tree} and run 'doit download' to vendor them again",
            )
        return tree


def pack_tree(tree: Path, dest: Path) -> Path:
    """The tree as one archive for a machine that shares no files with this one.

    Same tree, same bytes (sorted members, no dates, owners or umask), so the
    remote cache stores it once; the receiving build hashes the unpacked tree again.
    """
    archive = dest / f"crates-{tree.name}.tar.gz"
    if archive.is_file():
        return archive
    dest.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in sorted(tree.rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue
            info = tarfile.TarInfo(f"{tree.name}/{path.relative_to(tree).as_posix()}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
                continue
            info.size = path.stat().st_size
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with path.open("rb") as f:
                tf.addfile(info, f)
    write_atomic(archive, gzip.compress(buffer.getvalue(), mtime=0))
    return archive


def _cargo_vendor(name: str, manifests: list[Path], out: Path, registry: str | None) -> str:
    """Run ``cargo vendor --locked``; cargo's source replacement with the tree's path left out."""
    toolchain = rust_toolchain()
    if toolchain is None:
        raise AffineurError(
            "the sdist's Cargo.lock names crates, and vendoring them needs cargo, "
            "which is not on PATH",
            package=name,
            stage="download",
            hint="install a Rust toolchain (rustup), or mark the package 'prebuilt: true' "
            f"in overrides/{name}.yaml",
        )
    # --respect-source-config: the user's cargo configuration (a mirror replacing
    # crates-io) is where crates come from, as pip's configuration is for sdists.
    argv = [str(toolchain.bin / "cargo"), "vendor", "--locked", "--versioned-dirs"]
    argv += ["--respect-source-config", "--manifest-path", str(manifests[0])]
    for extra in manifests[1:]:
        argv += ["--sync", str(extra)]
    if registry is not None:
        # Only the source cargo reads crates from changes; Cargo.lock still names
        # crates-io, so the build's source replacement is the same either way.
        argv += [
            "--config",
            'source.crates-io.replace-with="affineur-crates"',
            "--config",
            f"source.affineur-crates.registry={json.dumps(registry)}",
        ]
    argv.append(str(out))
    env = {**os.environ, "CARGO_TERM_COLOR": "never"}
    try:
        done = subprocess.run(
            argv,
            cwd=manifests[0].parent,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_VENDOR_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AffineurError(
            f"cargo vendor did not run: {exc}", package=name, stage="download"
        ) from exc
    if done.returncode != 0:
        tail = [line for line in done.stderr.splitlines() if line.strip()][-12:]
        raise AffineurError(
            f"cargo vendor failed for the crates in {manifests[0].parent.name}/Cargo.lock",
            package=name,
            stage="download",
            causes=tuple(tail),
            hint="check the variant's crates_index (and that the registry serves every crate "
            f"Cargo.lock names), or mark the package 'prebuilt: true' in overrides/{name}.yaml",
        )
    return _portable_config(done.stdout, out)


def _portable_config(printed: str, out: Path) -> str:
    """Cargo's printed source replacement with the vendor path as a placeholder."""
    data = tomllib.loads(printed)
    for table in data.get("source", {}).values():
        if isinstance(table, dict) and "directory" in table:
            table["directory"] = _PLACEHOLDER
    return tomlkit.dumps(data)


def cargo_home(home: Path, tree: Path) -> Path:
    """A CARGO_HOME whose config sends every crate source to ``tree`` and forbids the network."""
    config: dict[str, Any] = tomllib.loads((tree / _CONFIG).read_text(encoding="utf-8"))
    for table in config.get("source", {}).values():
        if isinstance(table, dict) and table.get("directory") == _PLACEHOLDER:
            table["directory"] = str(tree / _VENDOR)
    config["net"] = {"offline": True}
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(tomlkit.dumps(config), encoding="utf-8")
    return home


# --- the toolchain ------------------------------------------------------------------


@dataclass(frozen=True)
class RustToolchain:
    """A Rust toolchain's own folder (``sysroot``), its ``bin``, and the versions it reports."""

    sysroot: Path
    bin: Path
    rustc: str
    cargo: str

    def versions(self) -> dict[str, str]:
        return {"rustc": self.rustc, "cargo": self.cargo}


def _version(binary: Path) -> str:
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            errors="replace",
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"},
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else "unknown"


@functools.cache
def rust_toolchain() -> RustToolchain | None:
    """The host's Rust toolchain (the one ``rustc`` on PATH runs), or None without one.

    Asked once per process, and only by builds and locks that hold Rust.
    """
    found = shutil.which("rustc")
    if found is None:
        return None
    real = Path(found).resolve()
    if real.name.startswith("rustup"):
        bin_dir = rustup_toolchain_bin()
        if bin_dir is None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                done = subprocess.run(
                    [found, "--print", "sysroot"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                if done.returncode == 0 and done.stdout.strip():
                    bin_dir = Path(done.stdout.strip()) / "bin"
        if bin_dir is None or not (bin_dir / "rustc").is_file():
            return None
    else:
        bin_dir = real.parent
    bin_dir = bin_dir.resolve()
    if not (bin_dir / "cargo").exists():
        return None
    return RustToolchain(
        bin_dir.parent, bin_dir, _version(bin_dir / "rustc"), _version(bin_dir / "cargo")
    )


# --- one build ------------------------------------------------------------------------


@dataclass(frozen=True)
class RustBuild:
    """What a build with Rust in it is given: variables, read-only mounts, record entries."""

    env: Mapping[str, str]
    read_only: tuple[Path, ...]
    record: Mapping[str, Any]


def _has_cargo_manifest(source: Path) -> bool:
    return any(
        path
        for pattern in ("Cargo.toml", "*/Cargo.toml", "*/*/Cargo.toml")
        for path in source.glob(pattern)
        if not _skipped(path.relative_to(source).parts[:-1])
    )


def rust_build(
    name: str,
    source: Path,
    work: Path,
    *,
    vendored: g.VendoredCrates | None,
    crates: CrateStore | None,
    path: str,
    required: bool = True,
) -> RustBuild | None:
    """The offline cargo setup of one build, or None for a source without Rust.

    ``work`` is the build's own writable folder (its CARGO_HOME goes there);
    ``path`` the PATH the build would otherwise have, which the toolchain's bin
    is put in front of. Discovery passes ``required=False``: a host without Rust
    still locks, and the build says what is missing.
    """
    if vendored is None and not _has_cargo_manifest(source):
        return None
    toolchain = rust_toolchain()
    # Without vendored crates the Rust may be optional (an accelerator with a pure
    # Python fallback): the backend decides. With them, cargo is certainly needed.
    if toolchain is None and (not required or vendored is None):
        return None
    if toolchain is None:
        raise AffineurError(
            "this sdist's Rust crates were vendored, and no Rust toolchain is on PATH",
            package=name,
            stage="build-env",
            hint="install one (rustup, or the distribution's rustc and cargo), "
            f"or mark the package 'prebuilt: true' in overrides/{name}.yaml",
        )
    home = work / "cargo-home"
    read_only: list[Path] = [toolchain.sysroot]
    record: dict[str, Any] = {"rust": toolchain.versions()}
    if vendored is not None and crates is not None:
        tree = crates.verified(name, vendored)
        cargo_home(home, tree)
        read_only.append(tree)
        record["crates"] = {"sha256": vendored.sha256, "count": len(vendored.crates)}
    else:
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text("[net]\noffline = true\n", encoding="utf-8")
    env = {
        "CARGO_HOME": str(home),
        "CARGO_NET_OFFLINE": "true",
        "PATH": os.pathsep.join([str(toolchain.bin), *filter(None, [path])]),
    }
    return RustBuild(env, tuple(read_only), record)
