"""Public packages whose names load their private module on first use (PEP 562).

A no-op ``doit`` must finish in a fraction of a second, and importing every
module of every stage costs more than the rest of such a run: a stage's public
package names dozens of classes whose modules pull in tomlkit, installer,
resolvelib, rich and the SBOM and provenance code, while a no-op uses a handful.
So a public ``__init__`` lists which private module holds each name, and the
module is imported when the name is first looked up. The same names stay
imported under ``TYPE_CHECKING`` for mypy; a test checks that both lists agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, modules: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose ``modules`` maps a
    private module (``"_builder"``) to the public names it defines."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        # Cached in the package, so the next lookup is a plain attribute read.
        setattr(import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(where) | set(vars(import_module(package))))

    return __getattr__, __dir__
