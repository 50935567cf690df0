"""Proving a build reproduces: another arrangement of the same build, and a byte comparison.

A rebuild that runs exactly like the first proves little: the things that leak
into wheels are the things that happen to be the same twice on one machine.
So the second build changes what must not matter:

* the build directory's path (another work folder, deeper, another name);
* the umask of every hook process (0077 instead of the caller's);
* the dates of the unpacked source files (set far into the past), and the
  clock itself where libfaketime's ``faketime`` is installed;
* the order of environment variables, the locale and the time zone.

Then the two wheels are compared byte for byte; when they differ, member by
member (content, date, mode, position, presence), and with diffoscope where it
is installed, so the report says what leaked and where.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from affineur.pep517 import Confinement, run_hook_process

__all__ = [
    "MemberDiff",
    "VariedRunner",
    "compare_wheels",
    "diffoscope_report",
    "varied_environment",
]

# A date long before any sdist in use: a backend that copies source mtimes into
# the archive (and clamps only newer ones to SOURCE_DATE_EPOCH) shows it at once.
_OLD_SOURCE_MTIME = 1_000_000_000  # 2001-09-09
_UMASK = 0o077
_FAKETIME_OFFSET = "+397d"
# The opposite side of the date line from most build machines.
_TIME_ZONES = ("Pacific/Kiritimati", "Etc/GMT+12")


def varied_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` in reverse order, with another locale and another time zone."""
    env = dict(reversed(list(base.items())))
    current = base.get("LC_ALL") or base.get("LANG") or ""
    locale = "POSIX" if current.startswith("C.") else "C.UTF-8"
    zone = _TIME_ZONES[1] if base.get("TZ") == _TIME_ZONES[0] else _TIME_ZONES[0]
    env.update({"LANG": locale, "LC_ALL": locale, "TZ": zone})
    return env


class VariedRunner:
    """A hook runner (see :class:`affineur.pep517.Runner`) that varies umask, clock and mtimes.

    The umask is set by a shell in the hook's own process, never in ours: builds
    in other threads keep theirs.
    """

    def __init__(self, *, use_faketime: bool = True) -> None:
        self.sh = shutil.which("sh") or "/bin/sh"
        self.faketime = shutil.which("faketime") if use_faketime else None
        self._aged: set[Path] = set()

    @property
    def conditions(self) -> list[str]:
        """What this runner changes, for the report."""
        found = [
            "another build directory",
            f"umask {_UMASK:04o}",
            "source files dated 2001-09-09",
            "environment variables in reverse order",
            "another locale and time zone",
        ]
        if self.faketime:
            found.append(f"the clock moved {_FAKETIME_OFFSET} (faketime)")
        return found

    def _age_sources(self, tree: Path) -> None:
        if tree in self._aged:
            return
        self._aged.add(tree)
        for folder, _dirs, files in os.walk(tree):
            for name in files:
                path = Path(folder) / name
                if not path.is_symlink():
                    os.utime(path, (_OLD_SOURCE_MTIME, _OLD_SOURCE_MTIME))

    def __call__(
        self,
        cmd: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log: Path,
        network: bool,
        timeout: float | None,
        confinement: Confinement | None = None,
    ) -> None:
        # cwd is the unpacked (and patched) source tree: the first hook call of a
        # build comes before any output exists in it.
        self._age_sources(cwd)
        argv = [self.sh, "-c", f'umask {_UMASK:04o} && exec "$@"', "sh", *cmd]
        # rustc never starts under libfaketime (it hangs at start-up): a build that
        # runs cargo (pep517's rust_build sets CARGO_NET_OFFLINE) keeps the real clock.
        rust = env.get("CARGO_NET_OFFLINE") == "true"
        if self.faketime and rust:
            with log.open("a") as out:
                out.write("=== the clock is not moved for this build: rustc hangs under faketime\n")
        if self.faketime and not rust:
            argv = [self.faketime, "-f", _FAKETIME_OFFSET, *argv]
        run_hook_process(
            argv,
            cwd=cwd,
            env=env,
            log=log,
            network=network,
            timeout=timeout,
            confinement=confinement,
        )


DiffKind = Literal[
    "content", "date", "mode", "compression", "position", "only-first", "only-second"
]


@dataclass(frozen=True)
class MemberDiff:
    """One way one archive member differs between two wheels."""

    member: str
    kind: DiffKind
    first: str = ""
    second: str = ""

    def describe(self) -> str:
        if self.kind == "only-first":
            return f"{self.member}: only in the first build"
        if self.kind == "only-second":
            return f"{self.member}: only in the rebuild"
        detail = f" ({self.first} vs {self.second})" if self.first or self.second else ""
        return f"{self.member}: {self.kind} differs{detail}"


def compare_wheels(first: Path, second: Path) -> list[MemberDiff]:
    """Every difference between two wheels; empty when their bytes are identical."""
    if first.read_bytes() == second.read_bytes():
        return []
    diffs: list[MemberDiff] = []
    with zipfile.ZipFile(first) as a, zipfile.ZipFile(second) as b:
        infos_a = {i.filename: i for i in a.infolist()}
        infos_b = {i.filename: i for i in b.infolist()}
        order_a = [n for n in a.namelist() if n in infos_b]
        order_b = [n for n in b.namelist() if n in infos_a]
        for name in sorted(infos_a.keys() | infos_b.keys()):
            if name not in infos_b:
                diffs.append(MemberDiff(name, "only-first"))
                continue
            if name not in infos_a:
                diffs.append(MemberDiff(name, "only-second"))
                continue
            ia, ib = infos_a[name], infos_b[name]
            if a.read(ia) != b.read(ib):
                diffs.append(MemberDiff(name, "content"))
            if ia.date_time != ib.date_time:
                diffs.append(MemberDiff(name, "date", _date(ia.date_time), _date(ib.date_time)))
            if ia.external_attr != ib.external_attr:
                diffs.append(
                    MemberDiff(
                        name, "mode", oct(ia.external_attr >> 16), oct(ib.external_attr >> 16)
                    )
                )
            if ia.compress_type != ib.compress_type:
                diffs.append(
                    MemberDiff(name, "compression", str(ia.compress_type), str(ib.compress_type))
                )
            if order_a.index(name) != order_b.index(name):
                diffs.append(
                    MemberDiff(name, "position", str(order_a.index(name)), str(order_b.index(name)))
                )
    if not diffs:
        # Same members, same content and metadata: the container itself differs
        # (comment, extra fields, compressed bytes).
        diffs.append(MemberDiff("(zip structure)", "content"))
    return diffs


def _date(value: tuple[int, ...]) -> str:
    return "{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}".format(*value)


def diffoscope_report(first: Path, second: Path, out: Path) -> Path | None:
    """diffoscope's text report of the two wheels in ``out``, or None without diffoscope."""
    tool = shutil.which("diffoscope")
    if tool is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [tool, "--text", str(out), "--no-progress", str(first), str(second)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out if out.is_file() else None
