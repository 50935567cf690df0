"""Benchmark: what taking a package from git costs at lock time, and that it is repeatable.

Makes a local repository of ``--files`` small files with one submodule, then
fetches, checks out and archives its tag ``--runs`` times through the real
:class:`affineur.index.GitSource`, as ``doit lock`` does::

    .venv/bin/python tests/benchmarks/git_source.py                 # 3000 files, 3 runs
    .venv/bin/python tests/benchmarks/git_source.py --files 20000

It prints the wall time of each run split into git's part and the archive's,
the archive's size, and whether every run gave the same sha256 (it must).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from affineur.index import GitSource, sha256_file

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        env=ENV,
        check=True,
        capture_output=True,
    )


def make_repository(root: Path, files: int) -> Path:
    sub = root / "sub"
    sub.mkdir()
    git(sub, "init", "-q")
    (sub / "data.txt").write_text("submodule\n")
    git(sub, "add", ".")
    git(sub, "commit", "-q", "-m", "data")
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    for i in range(files):
        folder = repo / "pkg" / f"sub{i % 50}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"m{i}.py").write_text(f"VALUE = {i}\n" * 20)
    git(repo, "submodule", "add", "-q", str(sub), "pkg/vendored")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "release")
    git(repo, "tag", "v1.0")
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = make_repository(root, args.files)
        source = GitSource(canonicalize_name("bench"), "1.0", str(repo), "v1.0")
        spent_in_git: list[float] = []
        real_run = subprocess.run

        def timed_run(*a: Any, **k: Any) -> Any:
            started = time.perf_counter()
            try:
                return real_run(*a, **k)
            finally:
                spent_in_git.append(time.perf_counter() - started)

        walls, hashes, size = [], set(), 0
        for run in range(args.runs):
            work = root / f"run{run}"
            work.mkdir()
            spent_in_git.clear()
            subprocess.run = timed_run  # type: ignore[assignment]
            started = time.perf_counter()
            try:
                _commit, archive = source.checkout(work)
            finally:
                subprocess.run = real_run
            wall = time.perf_counter() - started
            walls.append(wall)
            hashes.add(sha256_file(archive))
            size = archive.stat().st_size
            in_git = sum(spent_in_git)
            print(
                f"run {run + 1}: {wall:.2f} s (git {in_git:.2f} s, archive {wall - in_git:.2f} s)"
            )
        print(f"{args.files} files + 1 submodule: median {statistics.median(walls):.2f} s")
        print(f"archive: {size / 1e6:.1f} MB; same sha256 in every run: {len(hashes) == 1}")


if __name__ == "__main__":
    main()
