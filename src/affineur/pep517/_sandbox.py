"""The filesystem sandbox every hook call runs in (discovery and build alike).

An sdist's build backend is code from whoever uploaded the sdist. Inside the
sandbox it sees:

* the system read-only: ``/usr``, ``/etc`` (minus the files only root may
  read), ``/opt`` and the merged-/usr links, plus the interpreter's own prefix
  when it lives elsewhere (pyenv's, under a home directory);
* its own source and work directory writable, its build environment read-only;
* a private ``/tmp``, a minimal ``/dev``, its own ``/proc``;
* no home directory, no checkout, no build cache, no other build's files: none
  of them is mounted, and where one lies under a mounted system directory it is
  covered by an empty tmpfs;
* no network (unless the variant allows it), no other process, and no way to
  outlive the run: the sandbox's pid namespace dies with its first process,
  which dies with affineur.

Two implementations give those guarantees from the same :class:`Plan`:
bubblewrap (``bwrap``) where it is installed, else :mod:`._sandbox_helper`,
which builds the same tree with unshare(2) mount namespaces. A variant may
choose one, or relax the sandbox explicitly (``sandbox: {kind: none}``, more
read-only or writable paths, network); every build record says which one ran.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from affineur.config import SandboxChoice, SandboxSetting
from affineur.errors import AffineurError

__all__ = [
    "SANDBOX_FAILED",
    "SYSTEM_PATHS",
    "Confinement",
    "Plan",
    "SandboxKind",
    "available_sandboxes",
    "choose_sandbox",
    "confine",
    "sandbox_command",
]

SandboxKind = Literal["bubblewrap", "unshare", "none"]

# What a build may read of the host. /opt because toolchains live there (CUDA,
# ROCm, compilers); /usr/local is inside /usr.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
# Readable only by root, and a build may run as root (CI): never shown.
_ROOT_ONLY_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-")
_ROOT_ONLY_DIRS = ("/etc/ssh", "/etc/ssl/private", "/etc/sudoers.d")

_HELPER = Path(__file__).with_name("_sandbox_helper.py")
# The exit status the unshare helper uses when it cannot build the sandbox
# (bubblewrap's own failures print "bwrap:" and exit 1, which a hook may too).
SANDBOX_FAILED = 125


@dataclass(frozen=True)
class Confinement:
    """What one hook call may reach, beyond the system: decided by the caller.

    ``writable`` are the call's own directories (source tree, work dir, the hook
    protocol's control dir); ``read_only`` its build environment and the hook
    script; ``hidden`` what must stay unreachable even when it lies inside a
    mounted directory (the checkout, the home directory, the build cache).
    """

    kind: SandboxKind
    writable: tuple[Path, ...] = ()
    read_only: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()
    network: bool = False

    def adding(
        self, *, writable: Iterable[Path] = (), read_only: Iterable[Path] = ()
    ) -> Confinement:
        return Confinement(
            self.kind,
            (*self.writable, *writable),
            (*self.read_only, *read_only),
            self.hidden,
            self.network,
        )


PlanEntry = tuple[str, str, str]
"""(kind, source, destination): kind is ro, rw, tmpfs, symlink, dev or proc."""


@dataclass(frozen=True)
class Plan:
    """The sandbox's file tree, in mount order (a parent before what is mounted inside it)."""

    entries: tuple[PlanEntry, ...]
    network: bool
    visible: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, confinement: Confinement) -> Plan:
        def absolute(path: Path | str) -> str:
            return str(Path(path).absolute())

        system: list[PlanEntry] = []
        for name in SYSTEM_PATHS:
            path = Path(name)
            if path.is_symlink():
                system.append(("symlink", str(path.readlink()), name))
            elif path.is_dir():
                system.append(("ro", name, name))
        mounted = [p for kind, _, p in system if kind == "ro"]
        read_only = [*_interpreter_prefixes(), *confinement.read_only]
        extra_ro = [absolute(p) for p in read_only]
        extra_ro = [p for p in extra_ro if Path(p).exists() and not _under_any(p, mounted)]
        writable = [absolute(p) for p in confinement.writable if Path(p).exists()]
        # Bind mounts of the read-only environment inside a writable work dir come
        # after it; a hidden directory's cover comes before what is mounted inside it.
        binds: list[tuple[int, int, PlanEntry]] = []
        for cover in [absolute(h) for h in confinement.hidden] + list(_ROOT_ONLY_DIRS):
            if _under_any(cover, [*mounted, *extra_ro]) and Path(cover).is_dir():
                binds.append((_depth(cover), 1, ("tmpfs", "", cover)))
        binds += [(_depth(p), 2, ("rw", p, p)) for p in writable]
        binds += [(_depth(p), 3, ("ro", p, p)) for p in extra_ro]
        files = [("ro", os.devnull, f) for f in _ROOT_ONLY_FILES if Path(f).is_file()]
        entries: list[PlanEntry] = [
            ("dev", "", "/dev"),
            ("proc", "", "/proc"),
            ("tmpfs", "", "/tmp"),
            *sorted(system, key=lambda e: _depth(e[2])),
        ]
        entries += [entry for _, _, entry in sorted(binds, key=lambda b: (b[0], b[1]))]
        entries += files
        visible = tuple(dict.fromkeys(p for kind, _, p in entries if kind in ("ro", "rw")))
        return cls(tuple(entries), confinement.network, visible)


def _depth(path: str) -> int:
    return len(Path(path).parts)


def _under_any(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _interpreter_prefixes() -> list[Path]:
    """Where the interpreter that makes build environments lives (a venv links to it)."""
    found: list[Path] = []
    for prefix in (sys.base_prefix, sys.base_exec_prefix):
        real = Path(prefix).resolve()
        if real not in found:
            found.append(real)
    return found


def _bwrap_argv(bwrap: str, plan: Plan, argv: Sequence[str], cwd: Path) -> list[str]:
    args = [
        bwrap,
        "--die-with-parent",
        "--new-session",
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]
    if not plan.network:
        args.append("--unshare-net")
    for kind, source, dest in plan.entries:
        if kind == "ro":
            args += ["--ro-bind", source, dest]
        elif kind == "rw":
            args += ["--bind", source, dest]
        elif kind == "tmpfs":
            args += ["--tmpfs", dest]
        elif kind == "symlink":
            args += ["--symlink", source, dest]
        elif kind == "dev":
            args += ["--dev", dest]
        elif kind == "proc":
            args += ["--proc", dest]
    # Nothing may be created at the top of the tree or in a cover, as in the
    # unshare sandbox: covers are made writable only to hold mount points.
    for kind, _, dest in plan.entries:
        if kind == "tmpfs" and dest != "/tmp":
            args += ["--remount-ro", dest]
    args += ["--remount-ro", "/", "--cap-drop", "ALL", "--chdir", str(cwd), "--", *argv]
    return args


# The helper is imported, not run as a script: Python compiles a script on every
# start but loads an imported module's bytecode. Its folder goes last on the
# path, so it cannot shadow the standard library.
_HELPER_START = (
    "import sys; sys.path.append({folder!r}); import _sandbox_helper; _sandbox_helper.main()"
)


def helper_argv(plan: Plan, argv: Sequence[str], cwd: Path, root: Path) -> list[str]:
    """The unshare helper's command line; its arguments are read by its ``parse_spec``."""
    flat = [part for entry in plan.entries for part in entry]
    return [
        _host_python(),
        "-I",
        "-S",
        "-c",
        _HELPER_START.format(folder=str(_HELPER.parent)),
        str(os.getpid()),
        "1" if plan.network else "0",
        str(root),
        str(cwd),
        str(len(plan.entries)),
        *flat,
        *argv,
    ]


def _host_python() -> str:
    return str(Path(sys.executable).resolve())


def sandbox_command(
    argv: Sequence[str], *, cwd: Path, confinement: Confinement, scratch: Path
) -> list[str]:
    """``argv`` wrapped in the sandbox ``confinement`` names.

    ``scratch`` is an empty directory the unshare sandbox mounts its new root on
    (the caller removes it afterwards).
    """
    plan = Plan.of(confinement)
    if confinement.kind == "bubblewrap":
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise _unavailable("bubblewrap")
        return _bwrap_argv(bwrap, plan, argv, cwd)
    if confinement.kind == "unshare":
        return helper_argv(plan, argv, cwd, scratch)
    return list(argv)


def _unavailable(kind: str) -> AffineurError:
    return AffineurError(
        f"the {kind} sandbox does not work on this machine",
        stage="isolation",
        hint=(
            "install bubblewrap (apt-get install bubblewrap) and allow unprivileged user "
            "namespaces; or choose another in the variant ('sandbox: {kind: unshare}'), "
            "or run builds unconfined on purpose with 'sandbox: {kind: none}'"
        ),
    )


@functools.cache
def _works(kind: SandboxKind) -> bool:
    """Whether ``kind`` can run a trivial command here (probed once per process)."""
    true = shutil.which("true") or "/bin/true"
    with tempfile.TemporaryDirectory(prefix="affineur-probe-") as scratch:
        work = Path(scratch) / "work"
        root = Path(scratch) / "root"
        work.mkdir()
        root.mkdir()
        try:
            argv = sandbox_command(
                [true],
                cwd=work,
                confinement=Confinement(kind, writable=(work,)),
                scratch=root,
            )
        except AffineurError:
            return False
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return False
    return done.returncode == 0


def available_sandboxes() -> list[SandboxKind]:
    """The sandboxes that work here, best first."""
    kinds: tuple[SandboxKind, ...] = ("bubblewrap", "unshare")
    return [kind for kind in kinds if _works(kind)]


def choose_sandbox(choice: SandboxChoice) -> SandboxKind:
    """The sandbox a variant's ``sandbox.kind`` means on this machine.

    ``auto`` is bubblewrap, else unshare; if neither works that is an error, not
    a silent fall back to no sandbox: running builds unconfined must be asked for.
    """
    if choice == "none":
        return "none"
    if choice == "auto":
        found = available_sandboxes()
        if not found:
            raise _unavailable("bubblewrap or unshare")
        return found[0]
    if not _works(choice):
        raise _unavailable(choice)
    return choice


def confine(
    setting: SandboxSetting,
    *,
    writable: Iterable[Path],
    read_only: Iterable[Path],
    hidden: Iterable[Path],
) -> Confinement:
    """The confinement of one hook caller: its own directories plus the variant's additions.

    The home directory is always hidden; callers add the checkout and the cache.
    """
    return Confinement(
        choose_sandbox(setting.kind),
        writable=(*writable, *(Path(p) for p in setting.writable)),
        read_only=(*read_only, *(Path(p) for p in setting.read_only)),
        hidden=(*hidden, Path.home()),
    )
