"""Command-line options several commands share, so each reads and is documented the same way."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["AddCommand", "json_format", "lock_choice"]

AddCommand = Callable[..., argparse.ArgumentParser]
"""``add(name, help, **parser_kwargs)``: a subcommand with the common options."""


def lock_choice(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--collection", metavar="NAME", help="the collection (needed only when several match)"
    )
    p.add_argument("--variant", metavar="NAME", help="the variant (needed only when several match)")


def json_format(p: argparse.ArgumentParser, *others: str) -> None:
    p.add_argument(
        "--format",
        choices=["text", *others, "json"],
        default="text",
        help="json: one document, described by schemas/cli-*.schema.json",
    )
