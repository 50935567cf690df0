"""``affineur export``: the built install set with our wheels' hashes, for pip and uv.

A hashed requirements file or a PEP 751 ``pylock.toml`` whose wheels point into
the published index, so another machine installs exactly what was built here.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin

from affineur.cli._options import AddCommand, lock_choice
from affineur.cli._output import emit
from affineur.cli._select import context
from affineur.errors import AffineurError

__all__ = ["register"]


def _pylock_locator(
    args: argparse.Namespace, files: Path
) -> tuple[Callable[..., dict[str, str]], str | None]:
    if args.index_url:
        # Our published index keeps wheels in files/ beside simple/ (see publish.py).
        base = args.index_url.rstrip("/") + "/"
        return (lambda w: {"url": urljoin(base, f"../files/{w.filename}")}), args.index_url
    anchor = Path(args.output).resolve().parent if args.output else Path.cwd()
    return (lambda w: {"path": Path(os.path.relpath(files / w.filename, anchor)).as_posix()}), None


def _constraints_header(collection: str, variant: str, simple: str, upstream: int) -> str:
    origin = (
        "every wheel built by affineur"
        if not upstream
        else f"wheels built by affineur, and {upstream} upstream wheel(s) marked below"
    )
    return (
        f"{collection}/{variant}: the install set, pinned to the sha256 of its wheels ({origin}).\n"
        "Install exactly this set (pip 23.2 and later, or uv):\n"
        f"  pip install --require-hashes --only-binary :all: --index-url {simple} -r FILE\n"
        f"  uv pip install --require-hashes --index-url {simple} -r FILE\n"
        "Without --require-hashes, -c FILE pins what other requirements pull in."
    )


def cmd_export(args: argparse.Namespace) -> int:
    from affineur.build import (
        collect_wheels,
        constraints_text,
        pylock_text,
        target_markers,
        target_requires_python,
    )
    from affineur.progress import StreamReporter
    from affineur.run import open_checkout as open_stages

    root, names = context(args)
    if args.format == "pylock" and args.output:
        name = Path(args.output).name
        if not (name == "pylock.toml" or (name.startswith("pylock.") and name.endswith(".toml"))):
            raise AffineurError(
                f"PEP 751 lock files are named pylock.toml or pylock.<name>.toml, not {name}",
                hint="-o pylock.toml",
            )
    collection, variant = names.select_one(args.collection, args.variant)
    stages = open_stages(root, reporter=StreamReporter(verbose=getattr(args, "verbose", False)))
    lv = stages.locked_variant(collection, variant)
    wheels = collect_wheels(lv.graph, lv.keys, stages.cache)
    dist = root / "dist" / collection / variant
    if args.format == "constraints":
        simple = args.index_url or (dist / "simple").as_uri()
        upstream = sum(1 for w in wheels if w.upstream)
        header = _constraints_header(collection, variant, simple, upstream)
        text = constraints_text(wheels, header=header)
    else:
        locate, index = _pylock_locator(args, dist / "files")
        text = pylock_text(
            wheels,
            locate=locate,
            environment=target_markers(lv.graph.target),
            index=index,
            requires_python=target_requires_python(lv.graph.target),
        )
    emit(text, args.output)
    return 0


def register(add: AddCommand) -> None:
    """Add ``export`` to the ``affineur`` parser."""
    raw = argparse.RawDescriptionHelpFormatter

    p = add(
        "export",
        "the built install set as a hashed requirements file or PEP 751 pylock.toml",
        formatter_class=raw,
        description=(
            "Export the install set with the sha256 of the wheels in build/cache.\n\n"
            "constraints (the default): NAME==VERSION --hash=sha256:... lines, for\n"
            "  pip install --require-hashes -r FILE (pip 23.2 and later, uv pip install).\n"
            "pylock: PEP 751; wheels point into dist/<collection>/<variant>/files/ by a\n"
            "  path relative to the output file, or, with --index-url, by URL next to that\n"
            "  index (as doit publishes it: <index>/../files/<wheel>).\n"
            "Upstream wheels (prebuilt, or substituted in test mode) are marked as such."
        ),
    )
    p.add_argument("--format", choices=["constraints", "pylock"], default="constraints")
    lock_choice(p)
    p.add_argument("--index-url", help="the URL this collection's simple/ index is served at")
    p.add_argument("-o", "--output", help="write to this file (default: stdout)")
    p.set_defaults(func=cmd_export)
