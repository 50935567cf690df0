"""The ``affineur`` command."""

from affineur.cli._init import init_repository
from affineur.cli._main import main
from affineur.cli._render import dot_to_svg, to_dot, to_mermaid

__all__ = [
    "dot_to_svg",
    "init_repository",
    "main",
    "to_dot",
    "to_mermaid",
]
