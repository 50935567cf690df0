"""``affineur init``: a new repository that locks and builds on its first ``doit``.

It writes the few files a team would otherwise copy from an example and get
subtly wrong: a collection, a variant for the Python that runs affineur, the
``dodo.py`` entry point and the ``[tool.doit]`` table doit reads its plugins from
(both kept identical to this repository's own by a test), a ``.gitignore`` for
what doit produces, and a CI workflow that runs ``affineur check``. Existing
files are never overwritten.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from affineur.errors import AffineurError

__all__ = ["DOIT_TABLE", "init_repository", "register"]

DOIT_TABLE = """\
# doit reads its plugins from the pyproject.toml of the folder it starts in:
# affineur's run command schedules builds by resources and re-locks stale locks,
# forget makes a forgotten build build again, clean waits for a running build,
# and the state backend survives a killed run.
[tool.doit.plugins.command]
run = "affineur.run:ResourceRun"
forget = "affineur.run:ForgetBuilds"
clean = "affineur.run:CleanOutputs"

[tool.doit.plugins.backend]
affineur = "affineur.run:DurableDB"
"""

GITIGNORE = """\
# produced by doit: the build cache, logs, reports and the published indexes
/build/
/dist/
.doit.db*
.affineur/
__pycache__/
"""

CI_WORKFLOW = """\
# Refuse a pull request whose lock is stale or whose config is broken.
# 'affineur check' uses no network: it compares lock/ with the config files.
name: affineur check
on: [pull_request, push]
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "{python}"
      # Install affineur the way your team gets it (a wheel from your own index, a git URL).
      - run: pip install affineur
      - run: affineur check
"""

README = """\
# {name}

Wheels built from source by affineur.

    affineur add 'NAME>=1.0'      add a requirement to collections/{collection}.toml
    doit -n 2                     lock (when the config changed) and build
    affineur diff                 what the lock change does (commit lock/ with it)
    pip install --index-url file://$PWD/dist/{collection}/{variant}/simple NAME

Logs: `affineur log NAME`. CI runs `affineur check` (.github/workflows/affineur.yml).
"""


def _collection_text(name: str, variant: str, requirements: list[str]) -> str:
    items = "".join(f"    {json.dumps(r)},\n" for r in requirements)
    return (
        f'description = "what {name} builds"\n'
        f"variants = [{json.dumps(variant)}]\n"
        "# PEP 508 requirements: the packages you want wheels of. Their dependencies and\n"
        "# every build tool below them are found and built too. 'affineur add' edits this.\n"
        f"requirements = [\n{items}]\n"
        "# Limits on versions anywhere in the tree (nothing is installed for them):\n"
        "constraints = []\n"
    )


def _variant_text(description: str, python: str, index_url: str | None) -> str:
    if index_url:
        indexes = f"indexes: [{json.dumps(index_url)}]\n"
    else:
        indexes = (
            "# Where sdists come from. Without 'indexes', the index pip is configured to use\n"
            "# (PIP_INDEX_URL or pip.conf's index-url; never extra-index-url).\n"
            '# indexes: ["https://mirror.example/simple"]\n'
        )
    return (
        f"description: {json.dumps(description)}\n"
        f"# The Python the wheels are built for (and built with): this one if it is that\n"
        f"# version, else python{python} on PATH, under pyenv or uv; or name it:\n"
        f"# interpreter: /path/to/python{python}\n"
        f'python: "{python}"\n'
        f"{indexes}"
    )


def _template(name: str) -> str:
    return files("affineur.cli").joinpath("templates", name).read_text(encoding="utf-8")


def _requirements(texts: list[str]) -> list[str]:
    for text in texts:
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise AffineurError(
                f"invalid requirement {text!r}: {str(exc).splitlines()[0]}", stage="config"
            ) from None
    return texts


def init_repository(
    target: Path,
    *,
    collection: str = "main",
    variant: str = "cpu",
    requirements: list[str] | None = None,
    index_url: str | None = None,
    git: bool = True,
) -> list[Path]:
    """Write a new repository into ``target``; return the files written."""
    from affineur.config import load_project

    if (target / "collections").exists() or (target / "variants").exists():
        raise AffineurError(
            f"{target} already holds an affineur repository",
            hint="'affineur add' adds requirements to it",
        )
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    layout: dict[str, str] = {
        f"collections/{collection}.toml": _collection_text(
            collection, variant, _requirements(requirements or [])
        ),
        f"variants/{variant}.yaml": _variant_text(f"builds for Python {python}", python, index_url),
        "overrides/README.md": (
            "Per-package settings: overrides/<name>.yaml (env, patches, config_settings,\n"
            "prebuilt, ...); patches go in overrides/patches/<name>[-<version>]/*.patch.\n"
            "`affineur settings NAME` shows what a package is built with.\n"
        ),
        "dodo.py": _template("dodo.py.txt"),
        "pyproject.toml": DOIT_TABLE,
        ".gitignore": GITIGNORE,
        ".github/workflows/affineur.yml": CI_WORKFLOW.format(python=python),
        "README.md": README.format(
            name=target.name or "affineur repository",
            collection=collection,
            variant=variant,
        ),
    }
    clashes = [rel for rel in layout if (target / rel).exists()]
    if clashes:
        raise AffineurError(
            f"{target} already has {', '.join(clashes)}",
            hint="init writes a new repository; move those files aside or pick another folder",
        )
    # Check the new config before writing a byte, as 'add' does: names must be valid.
    from tempfile import TemporaryDirectory

    with TemporaryDirectory(prefix="affineur-init-") as tmp:
        for rel, text in layout.items():
            if rel.startswith(("collections/", "variants/")):
                path = Path(tmp) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
        try:
            load_project(Path(tmp))
        except AffineurError as exc:
            # Name the files the user would have got, not the scratch copies.
            def mine(text: str) -> str:
                return text.replace(tmp, str(target))

            exc.message, exc.file = mine(exc.message), exc.file and mine(exc.file)
            exc.causes = tuple(mine(c) for c in exc.causes)
            raise
    written = []
    target.mkdir(parents=True, exist_ok=True)
    for rel, text in layout.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if git and shutil.which("git") and not _inside_git(target):
        subprocess.run(["git", "init", "-q", str(target)], check=False)
    return written


def _inside_git(folder: Path) -> bool:
    result = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"],
        cwd=folder,
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.dir).resolve()
    init_repository(
        target,
        collection=args.collection,
        variant=args.variant,
        requirements=args.requirement,
        index_url=args.index_url,
        git=not args.no_git,
    )
    simple = target / "dist" / args.collection / args.variant / "simple"
    shown = args.dir if args.dir != "." else "."
    print(f"created {target}: collection {args.collection}, variant {args.variant}")
    print("next:")
    if shown != ".":
        print(f"  cd {shown}")
    if not args.requirement:
        print("  affineur add 'NAME'          what to build")
    print("  doit -n 2                    lock, then build every package from source")
    print(f"  pip install --index-url {simple.as_uri()} NAME")
    return 0


def register(add: Any) -> None:
    p = add(
        "init",
        "start a new repository (collection, variant, dodo.py, CI check)",
        description=(
            "Create a repository in DIR (default: the current folder): one collection,\n"
            "one variant for this Python, dodo.py, a .gitignore, and a CI workflow that\n"
            "runs 'affineur check'. Nothing existing is overwritten. Then 'doit' locks\n"
            "and builds."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", nargs="?", default=".", metavar="DIR")
    p.add_argument("--collection", default="main", metavar="NAME", help="default: main")
    p.add_argument("--variant", default="cpu", metavar="NAME", help="default: cpu")
    p.add_argument(
        "-r",
        "--requirement",
        action="append",
        default=[],
        metavar="REQ",
        help="a first requirement (repeatable; 'affineur add' adds more later)",
    )
    p.add_argument(
        "--index-url",
        metavar="URL",
        help="the index to take sdists from (default: the one pip is configured to use)",
    )
    p.add_argument("--no-git", action="store_true", help="do not run 'git init'")
    p.set_defaults(func=cmd_init)
