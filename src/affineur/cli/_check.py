"""``affineur check``: the CI gate, offline: config and locks valid and fresh."""

from __future__ import annotations

import argparse

from affineur.cli._options import AddCommand, json_format
from affineur.cli._output import emit_json
from affineur.cli._select import context
from affineur.errors import AffineurError

__all__ = ["register"]


def cmd_check(args: argparse.Namespace) -> int:
    from affineur.lock import check_project

    root, _checkout = context(args)
    report = check_project(root)
    if args.format == "json":
        emit_json(
            {
                "ok": report.ok,
                "config_problems": list(report.config_problems),
                "locks": [
                    {
                        "collection": s.collection,
                        "variant": s.variant,
                        "state": s.state,
                        "detail": s.detail,
                        "attested": list(s.attested),
                        "host_tools": list(s.host_tools),
                    }
                    for s in report.locks
                ],
                "sandboxes": [
                    {"variant": s.variant, "sandbox": s.sandbox, "detail": s.detail}
                    for s in report.sandboxes
                ],
                "pythons": [
                    {"variant": p.variant, "python": p.python, "executable": p.executable}
                    for p in report.pythons
                ],
            },
            "check",
        )
        return 0 if report.ok else 2
    for line in report.lines():
        print(line)
    if not report.ok:
        problems = report.problems()
        raise AffineurError(
            f"{len(problems)} problem(s) in config or locks",
            causes=tuple(problems),
            hint="fix the config, or re-lock with 'affineur lock' and commit lock/",
        )
    return 0


def register(add: AddCommand) -> None:
    """Add ``check`` to the ``affineur`` parser."""

    p = add(
        "check",
        "validate config and locks, fail on stale locks (offline, for CI)",
        description="exit status: 0 all good, 2 with every problem listed. Uses no network.",
    )
    json_format(p)
    p.set_defaults(func=cmd_check)
