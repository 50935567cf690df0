"""Forcing and collecting: ``affineur rebuild`` and ``affineur gc``.

Both write into the checkout's ``build/``, so both hold the checkout mutex, as
``doit`` does while it runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from affineur.cli._select import context

__all__ = ["register"]


def cmd_rebuild(args: argparse.Namespace) -> int:
    from affineur.progress import Event, Rebuilt, StreamReporter, describe
    from affineur.run import hold_checkout, open_checkout

    root, names = context(args)
    names.check_variant(args.variant)
    shown = StreamReporter(verbose=args.verbose)

    class Results:
        """The outcome of each rebuild on stdout; the progress on stderr as usual."""

        def report(self, event: Event) -> None:
            if isinstance(event, Rebuilt):
                print(describe(event), flush=True)
            else:
                shown.report(event)

    checkout = open_checkout(root, reporter=Results())
    with hold_checkout(root):
        checkout.rebuild(args.name, [args.variant] if args.variant else ())
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from affineur.run import find_garbage, hold_checkout, human_size, open_checkout, remove_garbage

    root, _names = context(args)
    checkout = open_checkout(root)
    with hold_checkout(root):
        garbage = find_garbage(checkout)
        if not garbage:
            print("nothing to collect: every file under build/ is referenced by a lock")
            return 0
        width = max(len(human_size(g.size)) for g in garbage)
        for item in garbage:
            where = item.path.relative_to(root).as_posix()
            print(f"{human_size(item.size):>{width}}  {where}  ({item.why})")
        total = human_size(sum(g.size for g in garbage))
        if not args.yes:
            print(
                f"{len(garbage)} item(s), {total}: dry run, nothing removed "
                "(affineur gc --yes removes them)"
            )
            return 0
        freed = remove_garbage(garbage)
    print(f"removed {len(garbage)} item(s), {human_size(freed)}")
    sys.stdout.flush()
    return 0


def register(add: Any) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = add(
        "rebuild",
        "build a package again instead of reusing its cache entry",
        formatter_class=raw,
        description=(
            "Build NAME again from its locked sdist, in each variant that locks it (or\n"
            "only --variant), and say whether the new wheel is identical to the one it\n"
            "replaces. Its build environment is built first where the cache lacks it,\n"
            "and published indexes that hold it are published again.\n\n"
            "'doit forget build:VARIANT:NAME-VERSION' followed by 'doit' does the same\n"
            "within a run."
        ),
    )
    p.add_argument("name", help="the package, as the lock names it")
    p.add_argument("--variant", metavar="NAME", help="only this variant (default: each)")
    p.set_defaults(func=cmd_rebuild)

    p = add(
        "gc",
        "remove what no lock references from build/ (dry run unless --yes)",
        formatter_class=raw,
        description=(
            "List the cache entries, downloads, work folders and logs under build/ that\n"
            "no lock of the checkout references, with their sizes. Nothing is removed\n"
            "without --yes. Builds that a lock needs are never removed, so the next\n"
            "'doit' still has nothing to do."
        ),
    )
    p.add_argument("--yes", action="store_true", help="remove them")
    p.set_defaults(func=cmd_gc)
