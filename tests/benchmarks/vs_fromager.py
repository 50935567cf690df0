"""Benchmark: affineur against fromager on the same tree, cold and no-op, side by side.

Both tools build one requirement (``requests`` by default) and every build tool under
it from source, for one variant, from the same index (the one pip is configured to
use). They run alternately from cold, A B A B, so that a machine whose load changes
during the run penalises both alike::

    python3 -m venv /work/fromager-venv && /work/fromager-venv/bin/pip install fromager uv
    .venv/bin/python tests/benchmarks/vs_fromager.py --fromager-venv /work/fromager-venv
    .venv/bin/python tests/benchmarks/vs_fromager.py --pairs 5 --noop-runs 7 --keep
    .venv/bin/python tests/benchmarks/vs_fromager.py --dry-run     # print the plan only

Cold means a new directory for each run and an empty cache home (``XDG_CACHE_HOME``,
which pip and uv use), so neither tool reuses anything of an earlier run:

* affineur: a fresh checkout (one collection with the requirement, one variant) and
  ``doit lock`` then ``doit -n <jobs>``: lock (resolve, download, discover) and build;
* fromager: an empty directory and ``fromager bootstrap <requirement>``, which
  resolves, downloads and builds in one command (fromager's documented usage).

Then the no-op pair, alternately in the last pair's directories: ``doit -n <jobs>``
again (nothing to do) against the same ``fromager bootstrap`` again (its re-run).

Wall time is measured around each command; CPU time is user + system time of the
command and every process it waited for (``getrusage(RUSAGE_CHILDREN)``), which
includes build backends, pip and uv. The script prints every run, then the medians
and the ratios affineur/fromager. It is a script, not a test: the figures depend on
the machine and its load, which it prints too.

affineur's hooks run in its filesystem sandbox. bubblewrap's pid namespace reaps the
hook processes itself, so their CPU time never reaches ``getrusage`` here: with it,
affineur's CPU seconds would leave out its builds. The benchmark's variant therefore
names the unshare sandbox (the same guarantees, from the same plan; its helper waits
for what it starts), unless ``--sandbox`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = Path(__file__).resolve().parents[2]
COLLECTION = "bench"
VARIANT = "cpu"
DEFAULT_FROMAGER_VENV = Path("/work/fromager-venv")
# One hour per command: a cold build of the default tree takes about a minute here.
TIMEOUT = 3600.0


# --- measuring one command ------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """Wall and CPU seconds of one command (CPU includes every child it waited for)."""

    wall: float
    cpu: float

    def __add__(self, other: Measure) -> Measure:
        return Measure(self.wall + other.wall, self.cpu + other.cpu)


class CommandFailed(Exception):
    def __init__(self, argv: Sequence[str], returncode: int, log: Path) -> None:
        tail = log.read_text(errors="replace").splitlines()[-25:] if log.exists() else []
        super().__init__(f"{' '.join(argv)} exited {returncode} (log: {log})\n" + "\n".join(tail))


def measure(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path) -> Measure:
    """Run ``argv`` with its output in ``log``; its wall time and its (children's) CPU time."""
    log.parent.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("ab") as out:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=TIMEOUT,
            check=False,
        )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise CommandFailed(argv, done.returncode, log)
    return Measure(wall, cpu)


def base_environment(cache_home: Path, *, pyc: bool) -> dict[str, str]:
    """This process's environment, minus doit's variables, with an empty cache home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOIT_")}
    env.pop("AFFINEUR_TEST_MODE", None)
    # pip and uv keep their caches here: a fresh one per run makes every run cold.
    env["XDG_CACHE_HOME"] = str(cache_home)
    if pyc:
        # A user's interpreter writes bytecode; a machine that turns it off would
        # make both tools compile themselves, and every build tool, on every run.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def precompile(python: str, *paths: str) -> None:
    """Compile a tool's own code, as ``pip install`` does when it installs it."""
    subprocess.run(
        [python, "-m", "compileall", "-q", "-q", "-j", "0", *paths],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )


def site_packages(python: str) -> list[str]:
    """The interpreter's site-packages (none when it does not run)."""
    try:
        done = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return []
    return [done.stdout.strip()]


# --- the two tools --------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    requirement: str
    jobs: int
    index: str | None
    isolation: bool
    fromager_venv: Path
    pyc: bool = True
    sandbox: str = "unshare"


class Affineur:
    """A fresh affineur checkout per cold run, driven with ``python -m doit``."""

    label = "affineur"

    def __init__(self, opts: Options) -> None:
        self.opts = opts

    def version(self) -> str:
        from importlib.metadata import version

        return version("affineur")

    def commands(self, root: Path) -> list[list[str]]:
        return [
            [sys.executable, "-m", "doit", "lock"],
            [sys.executable, "-m", "doit", "-n", str(self.opts.jobs)],
        ]

    def prepare(self, root: Path) -> None:
        root.mkdir(parents=True)
        shutil.copy(REPO / "dodo.py", root / "dodo.py")
        # doit reads affineur's plugins from the pyproject.toml of the folder it starts in.
        plugins = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["doit"]["plugins"]
        lines = []
        for section, entries in plugins.items():
            lines.append(f"[tool.doit.plugins.{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in entries.items()]
        (root / "pyproject.toml").write_text("\n".join(lines) + "\n")
        (root / "collections").mkdir()
        (root / "collections" / f"{COLLECTION}.toml").write_text(
            f'description = "benchmark against fromager"\nvariants = ["{VARIANT}"]\n'
            f"requirements = {json.dumps([self.opts.requirement])}\n"
        )
        python = f"{sys.version_info.major}.{sys.version_info.minor}"
        indexes = f"indexes: [{json.dumps(self.opts.index)}]\n" if self.opts.index else ""
        (root / "variants").mkdir()
        (root / "variants" / f"{VARIANT}.yaml").write_text(
            f'description: benchmark\npython: "{python}"\ndiscovery: wheels\n{indexes}'
            f"network_isolation: {'true' if self.opts.isolation else 'false'}\n"
            f"sandbox: {{kind: {self.opts.sandbox}}}\n"
        )

    def precompile(self) -> None:
        precompile(sys.executable, str(REPO / "src"), *site_packages(sys.executable))

    def environment(self, cache_home: Path) -> dict[str, str]:
        env = base_environment(cache_home, pyc=self.opts.pyc)
        # The checkout's dodo imports the affineur this interpreter has (the repository's).
        paths = [str(REPO / "src"), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in paths)
        return env

    def cold(self, root: Path, cache_home: Path) -> tuple[Measure, str]:
        self.prepare(root)
        env = self.environment(cache_home)
        lock_cmd, build_cmd = self.commands(root)
        locked = measure(lock_cmd, cwd=root, env=env, log=root / "benchmark.log")
        built = measure(build_cmd, cwd=root, env=env, log=root / "benchmark.log")
        detail = f"lock {locked.wall:.1f} s + build {built.wall:.1f} s"
        return locked + built, detail

    def noop(self, root: Path, cache_home: Path) -> Measure:
        env = self.environment(cache_home)
        return measure(self.commands(root)[1], cwd=root, env=env, log=root / "noop.log")

    def wheels(self, root: Path) -> list[str]:
        published = root / "dist" / COLLECTION / VARIANT / "files"
        return sorted(p.name for p in published.glob("*.whl"))


class Fromager:
    """``fromager bootstrap`` in an empty directory per cold run."""

    label = "fromager"

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.bin = opts.fromager_venv / "bin"

    def missing(self) -> list[str]:
        return [str(self.bin / t) for t in ("fromager", "uv") if not (self.bin / t).exists()]

    def version(self) -> str:
        done = subprocess.run(
            [str(self.bin / "fromager"), "--version"], capture_output=True, text=True, check=False
        )
        return done.stdout.strip().rsplit(" ", 1)[-1] if done.returncode == 0 else "?"

    def commands(self, root: Path) -> list[list[str]]:
        isolation = "--network-isolation" if self.opts.isolation else "--no-network-isolation"
        return [[str(self.bin / "fromager"), isolation, "bootstrap", self.opts.requirement]]

    def precompile(self) -> None:
        python = str(self.bin / "python")
        if paths := site_packages(python):
            precompile(python, *paths)

    def environment(self, cache_home: Path) -> dict[str, str]:
        env = base_environment(cache_home, pyc=self.opts.pyc)
        # fromager runs uv (and pip) by name: its own virtual environment's come first.
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = str(self.opts.fromager_venv)
        return env

    def cold(self, root: Path, cache_home: Path) -> tuple[Measure, str]:
        root.mkdir(parents=True)
        env = self.environment(cache_home)
        (command,) = self.commands(root)
        return measure(command, cwd=root, env=env, log=root / "benchmark.log"), ""

    def noop(self, root: Path, cache_home: Path) -> Measure:
        env = self.environment(cache_home)
        (command,) = self.commands(root)
        return measure(command, cwd=root, env=env, log=root / "noop.log")

    def wheels(self, root: Path) -> list[str]:
        return sorted(p.name for p in (root / "wheels-repo" / "downloads").glob("*.whl"))


Tool = Affineur | Fromager


# --- the alternating run --------------------------------------------------------------


@dataclass
class Results:
    cold: dict[str, list[Measure]] = field(default_factory=dict)
    noop: dict[str, list[Measure]] = field(default_factory=dict)
    wheels: dict[str, int] = field(default_factory=dict)


def _project_names(wheels: Sequence[str]) -> set[str]:
    return {canonicalize_name(parse_wheel_filename(w)[0]) for w in wheels}


def run_pairs(tools: Sequence[Tool], workdir: Path, pairs: int, noops: int) -> Results:
    results = Results()
    last: dict[str, Path] = {}
    for pair in range(1, pairs + 1):
        for tool in tools:
            root = workdir / f"{tool.label}-{pair}"
            cache = workdir / f"cache-{tool.label}-{pair}"
            m, detail = tool.cold(root, cache)
            wheels = tool.wheels(root)
            if not wheels:
                raise SystemExit(f"{tool.label} built no wheel in {root}")
            results.cold.setdefault(tool.label, []).append(m)
            results.wheels[tool.label] = len(wheels)
            last[tool.label] = root
            more = f" ({detail})" if detail else ""
            print(
                f"  pair {pair}  {tool.label:<9} cold  {m.wall:7.2f} s wall {m.cpu:7.2f} s CPU"
                f"  {len(wheels)} wheels{more}",
                flush=True,
            )
    names = [_project_names(tool.wheels(last[tool.label])) for tool in tools]
    if len(names) == 2 and names[0] != names[1]:
        print(f"  note: the trees differ: only affineur {sorted(names[0] - names[1])}, "
              f"only fromager {sorted(names[1] - names[0])}")  # fmt: skip
    for i in range(1, noops + 1):
        for tool in tools:
            root = last[tool.label]
            m = tool.noop(root, root.parent / f"cache-{tool.label}-{pairs}")
            results.noop.setdefault(tool.label, []).append(m)
            line = f"  no-op {i}  {tool.label:<9} {m.wall:7.3f} s wall {m.cpu:7.3f} s CPU"
            print(line, flush=True)
    return results


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b > 0 else "-"


def summary(results: Results, pairs: int, noops: int) -> list[str]:
    a, f = "affineur", "fromager"
    rows: list[tuple[str, float, float, str]] = []
    for label, runs, unit in (
        (f"cold lock + build, wall (median of {pairs})", results.cold, "wall"),
        ("cold lock + build, CPU seconds (median)", results.cold, "cpu"),
        (f"no-op run, wall (median of {noops})", results.noop, "wall"),
        ("no-op run, CPU seconds (median)", results.noop, "cpu"),
    ):
        if not runs.get(a) or not runs.get(f):
            continue
        x = _median([getattr(m, unit) for m in runs[a]])
        y = _median([getattr(m, unit) for m in runs[f]])
        rows.append((label, x, y, _ratio(x, y)))
    width = max((len(r[0]) for r in rows), default=10)
    lines = [f"  {'':<{width}}  {'affineur':>9}  {'fromager':>9}  {'ratio':>6}"]
    lines += [f"  {label:<{width}}  {x:9.3f}  {y:9.3f}  {r:>6}" for label, x, y, r in rows]
    return lines


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cpus ({model})"


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


# --- main -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fromager-venv",
        type=Path,
        default=DEFAULT_FROMAGER_VENV,
        help=f"virtual environment holding fromager and uv (default {DEFAULT_FROMAGER_VENV})",
    )
    parser.add_argument("--requirement", default="requests", help="what both tools build")
    parser.add_argument("--pairs", type=int, default=3, help="cold runs of each tool (A B A B)")
    parser.add_argument("--noop-runs", type=int, default=5, help="no-op runs of each tool")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="affineur's doit -n (default: cpus)"
    )
    parser.add_argument(
        "--index", help="simple-API URL for affineur (default: the index pip is configured to use)"
    )
    parser.add_argument(
        "--no-isolation", action="store_true", help="run both tools without network isolation"
    )
    parser.add_argument(
        "--no-pyc",
        action="store_true",
        help="keep this environment's bytecode setting (PYTHONDONTWRITEBYTECODE) and do not "
        "precompile the tools",
    )
    parser.add_argument(
        "--sandbox",
        choices=("unshare", "bubblewrap", "none"),
        default="unshare",
        help="affineur's sandbox (default unshare: bubblewrap hides its processes' CPU time)",
    )
    parser.add_argument("--dir", type=Path, help="where the runs go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; run nothing")
    opts = parser.parse_args(argv)
    if opts.pairs < 1 or opts.noop_runs < 0:
        parser.error("--pairs must be at least 1 and --noop-runs at least 0")

    options = Options(
        requirement=opts.requirement,
        jobs=opts.jobs,
        index=opts.index,
        isolation=not opts.no_isolation,
        fromager_venv=opts.fromager_venv.absolute(),
        pyc=not opts.no_pyc,
        sandbox=opts.sandbox,
    )
    affineur, fromager = Affineur(options), Fromager(options)
    if missing := fromager.missing():
        print(f"error: not found: {', '.join(missing)}", file=sys.stderr)
        print(
            f"hint: python3 -m venv {opts.fromager_venv} && "
            f"{opts.fromager_venv}/bin/pip install fromager uv",
            file=sys.stderr,
        )
        return 2
    workdir = (opts.dir or Path(tempfile.mkdtemp(prefix="affineur-vs-fromager-"))).absolute()
    if opts.dir and workdir.exists() and any(workdir.iterdir()):
        print(f"error: {workdir} is not empty", file=sys.stderr)
        return 2
    workdir.mkdir(parents=True, exist_ok=True)

    index = "--index" if opts.index else "the one pip is configured to use"
    print(f"affineur {affineur.version()} vs fromager {fromager.version()}: "
          f"{opts.requirement} and its build tools, one variant, from source")  # fmt: skip
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}, Python {platform.python_version()}")
    print(f"index: {index}; network isolation: {'on' if options.isolation else 'off'}; "
          f"affineur's sandbox: {options.sandbox}")  # fmt: skip
    bytecode = "precompiled tools, written as usual" if options.pyc else "as this environment says"
    print(f"bytecode: {bytecode}")
    print(f"load average at start: {load()}")
    print("commands (each cold run in a new directory with an empty cache home):")
    for tool in (affineur, fromager):
        for program, *args in tool.commands(workdir / tool.label):
            print(f"  {tool.label:<9} {' '.join((Path(program).name, *args))}")
    print("  no-op: the last command of each again, in the last cold run's directory")
    if opts.dry_run:
        plan = f"{opts.pairs} pairs and {opts.noop_runs} no-op pairs"
        print(f"dry run: {plan} would run in {workdir}")
        if not opts.dir:
            shutil.rmtree(workdir, ignore_errors=True)
        return 0

    if options.pyc:
        # Outside the timings: the tools as pip would have installed them.
        for tool in (affineur, fromager):
            tool.precompile()
    print(f"\nruns (A B A B), in {workdir}:")
    try:
        results = run_pairs((affineur, fromager), workdir, opts.pairs, opts.noop_runs)
    except CommandFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nresults (seconds; ratio = affineur / fromager):")
    for line in summary(results, opts.pairs, opts.noop_runs):
        print(line)
    print(f"wheels built: affineur {results.wheels.get('affineur', 0)}, "
          f"fromager {results.wheels.get('fromager', 0)}")  # fmt: skip
    print(f"load average at end: {load()}")
    if opts.keep:
        print(f"run directories kept in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
