"""Run a command inside a filesystem sandbox made with unshare(2) mount namespaces.

The fallback for machines without bubblewrap: it gives the same guarantees as
the bubblewrap command line :mod:`affineur.pep517._sandbox` writes, from the
same plan. It runs in its own interpreter (``python -I -S``, its folder last on
the path, so nothing of the checkout or of site-packages is importable), standard
library only, and it is the process that becomes the sandbox. Every hook process
starts through it, so it imports as little as it can (no json, pathlib or
platform: its spec comes as plain arguments, see :func:`spec_argv`) and is
imported rather than run as a script, which lets Python load its compiled
bytecode instead of compiling it each time.

Steps, each needed for a guarantee:

1. die with the parent (``PR_SET_PDEATHSIG``): a killed run leaves no build;
2. new user, mount, pid, ipc, uts (and network) namespaces, mapping only our
   own uid: nothing done inside can touch another user's files;
3. fork: the child is pid 1 of the new pid namespace, so when it dies the
   kernel kills every process the build started;
4. a tmpfs becomes the new root; the plan's read-only, writable, tmpfs, /dev and
   /proc entries are mounted into it, read-only ones recursively remounted
   read-only; the root itself is made read-only; ``pivot_root`` and a lazy
   unmount drop the host's tree entirely, so nothing else of it is reachable;
5. the command runs in a further user and mount namespace: mounts inherited
   from a more privileged namespace are locked, so the build cannot remount
   them writable or unmount them to see what they cover; ``no_new_privs`` keeps
   setuid programs from regaining privilege.
"""

# os and os.path, not pathlib: importing pathlib would cost every hook process
# several milliseconds.
# ruff: noqa: PTH103, PTH110, PTH112, PTH120, PTH123, PTH211

from __future__ import annotations

import ctypes
import os
import signal
import sys

# Annotations only: importing typing would cost every hook process a few milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2
# statvfs f_flag bits that a remount must keep (the kernel refuses to clear them
# on a mount inherited from another namespace).
_KEPT = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(err)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source or fstype or ''} on {target}",
    )


def _write(path: str, text: str) -> None:
    with open(path, "w") as out:
        out.write(text)


def _map_ids(inner_uid: int, outer_uid: int, inner_gid: int, outer_gid: int) -> None:
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{inner_uid} {outer_uid} 1\n")
    _write("/proc/self/gid_map", f"{inner_gid} {outer_gid} 1\n")


def _kept_flags(path: str) -> int:
    flags = os.statvfs(path).f_flag
    return sum(ms for st, ms in _KEPT if flags & st)


def _mountpoints_below(path: str) -> list[str]:
    """Mount points strictly below ``path`` (the submounts a recursive bind brought)."""
    found: list[str] = []
    with open("/proc/self/mountinfo") as mountinfo:
        lines = mountinfo.read().splitlines()
    for line in lines:
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(path.rstrip("/") + "/"):
            found.append(point)
    return found


def _remount_readonly(target: str) -> None:
    for point in [target, *_mountpoints_below(target)]:
        try:
            flags = _kept_flags(point)
        except OSError:
            continue
        _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)


def _make_target(target: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))


def _setup_root(root: str, plan: list[list[str]]) -> None:
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for kind, source, dest in plan:
        target = root + dest
        if kind in ("ro", "rw"):
            _make_target(target, os.path.isdir(source))
            _mount(source, target, None, MS_BIND | MS_REC)
            if kind == "ro":
                _remount_readonly(target)
        elif kind == "tmpfs":
            _make_target(target, True)
            mode = "1777" if dest == "/tmp" else "0755"
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode}")
        elif kind == "symlink":
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(source, target)
        elif kind == "dev":
            _make_target(target, True)
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755")
            for name in _DEVICES:
                if os.path.exists(f"/dev/{name}"):
                    _make_target(f"{target}/{name}", False)
                    _mount(f"/dev/{name}", f"{target}/{name}", None, MS_BIND)
            for name, link in (
                ("fd", "/proc/self/fd"),
                ("stdin", "/proc/self/fd/0"),
                ("stdout", "/proc/self/fd/1"),
                ("stderr", "/proc/self/fd/2"),
            ):
                os.symlink(link, f"{target}/{name}")
            _make_target(f"{target}/shm", True)
            _mount("tmpfs", f"{target}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
        elif kind == "proc":
            _make_target(target, True)
            _mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        else:
            raise SandboxError(f"unknown plan entry {kind!r}")
    # Covers held mount points while the tree was built; nothing may be written to them.
    for kind, _, dest in plan:
        if kind == "tmpfs" and dest != "/tmp":
            _mount(None, root + dest, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=0755")
    machine = os.uname().machine
    number = _PIVOT_ROOT.get(machine)
    if number is None:
        raise SandboxError(f"pivot_root is not known on {machine}")
    os.chdir(root)
    _check(libc.syscall(number, b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "unmount the host's root")
    os.chdir("/")


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _reap(worker: int) -> int:
    """pid 1's loop: collect every orphan, end with the command's status.

    When the command ends, everything else it left running in the sandbox is
    killed and collected here, and only then are the descriptors the command was
    given (the hook server's pipes) closed: the run reads their end as "nothing of
    this build runs any more", and goes on while the kernel is still tearing the
    namespaces down, which takes longer than a small build.
    """

    def stop(signum: int, frame: object) -> None:
        os.kill(-1, signal.SIGKILL)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    code = 1
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid == worker:
            code = _exit_code(status)
            # pid 1 of the namespace: this reaches every other process in it.
            try:  # noqa: SIM105 - not contextlib: one more import for every hook process
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _close_passed()
    return code


def _close_passed() -> None:
    """Close every descriptor but the standard three."""
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))


def parse_spec(args: Sequence[str]) -> dict[str, Any]:
    """The spec :func:`affineur.pep517._sandbox.helper_argv` wrote as arguments:
    parent pid, network (0 or 1), new root, working directory, the number of plan
    entries, each entry's kind, source and destination, then the command."""
    parent, network, root, cwd, count = args[:5]
    end = 5 + 3 * int(count)
    flat = args[5:end]
    return {
        "parent": int(parent),
        "network": network == "1",
        "root": root,
        "cwd": cwd,
        "plan": [list(flat[i : i + 3]) for i in range(0, len(flat), 3)],
        "argv": list(args[end:]),
    }


def main(args: Sequence[str] | None = None) -> None:
    spec = parse_spec(sys.argv[1:] if args is None else args)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != spec["parent"]:
        os._exit(1)  # the run died before the line above took effect
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if not spec["network"]:
        flags |= CLONE_NEWNET
    try:
        _check(libc.unshare(flags), "unshare")
        _map_ids(0, uid, 0, gid)
    except (SandboxError, OSError) as exc:
        print(f"affineur sandbox: {exc}", file=sys.stderr)
        os._exit(125)
    child = os.fork()
    if child:
        # Outside the new pid namespace: pass the run's signals on, end like the sandbox.
        # The descriptors passed on for the command are pid 1's to close (see _reap).
        _close_passed()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda s, f: os.kill(child, signal.SIGKILL))
        os._exit(_exit_code(os.waitpid(child, 0)[1]))
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        _setup_root(spec["root"], spec["plan"])
    except (SandboxError, OSError) as exc:
        print(f"affineur sandbox: {exc}", file=sys.stderr)
        os._exit(125)
    worker = os.fork()
    if worker == 0:
        try:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare")
            _map_ids(uid, 0, gid, 0)
            _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
            os.chdir(spec["cwd"])
            argv = spec["argv"]
            os.execve(argv[0], argv, os.environ)
        except (SandboxError, OSError) as exc:
            print(f"affineur sandbox: {exc}", file=sys.stderr)
            os._exit(125)
    os._exit(_reap(worker))


if __name__ == "__main__":
    main()
