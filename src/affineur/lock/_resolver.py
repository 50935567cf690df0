"""Joint resolution of a requirement set, as a resolvelib provider.

The provider knows nothing about indexes, sdists or hooks: it asks a
:class:`CandidateSource` for the versions of a project and the dependencies of one
version. The lock stage passes a source backed by the index client and the
metadata chain; tests pass an in-memory one. Resolution is therefore pure logic.

Extras follow the usual resolvelib pattern: ``name[extra]`` is its own
identifier, whose candidate depends on the base ``name`` at the same version
plus the requirements that the extra's markers select. That keeps one version
per project while letting each extra add its dependencies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version
from resolvelib import AbstractProvider, BaseReporter, ResolutionImpossible, Resolver
from resolvelib.resolvers import ResolutionTooDeep

from affineur.errors import AffineurError

__all__ = [
    "CandidateSource",
    "Dependency",
    "Resolution",
    "ResolveRequest",
    "resolve",
]


@dataclass(frozen=True)
class VersionInfo:
    """One installable version as the source sees it."""

    version: Version
    yanked: bool = False


class CandidateSource(Protocol):
    """Where versions and dependencies come from.

    ``versions`` may be called once per identifier and should be cheap after the
    first call (the index page is cached). ``dependencies`` can be expensive (it
    may download an sdist or run a PEP 517 hook), so the provider calls it only for
    candidates the resolver actually pins, and the source should cache it.
    """

    def versions(self, name: NormalizedName) -> Sequence[VersionInfo]: ...

    def dependencies(self, name: NormalizedName, version: Version) -> Sequence[str]: ...


@dataclass(frozen=True)
class Dependency:
    """A resolved requirement: who asked, for what, and which version it got."""

    parent: NormalizedName | None  # None for a top-level requirement
    name: NormalizedName
    version: Version
    req: str


@dataclass(frozen=True)
class Resolution:
    versions: Mapping[NormalizedName, Version]
    extras: Mapping[NormalizedName, frozenset[str]]
    dependencies: tuple[Dependency, ...]

    def requirements_of(self, parent: NormalizedName | None) -> list[Dependency]:
        return [d for d in self.dependencies if d.parent == parent]


@dataclass(frozen=True)
class ResolveRequest:
    requirements: Sequence[str]
    environment: Mapping[str, str]
    constraints: Sequence[str] = ()
    preferred: Mapping[NormalizedName, Version] = field(default_factory=dict)
    allow_prereleases: bool = False
    # Where each constraint came from, for error messages ("collections/x.toml").
    constraint_origin: str = "constraints"


# --- resolvelib's vocabulary ------------------------------------------------


@dataclass(frozen=True)
class _Req:
    name: NormalizedName
    extra: str | None
    specifier: SpecifierSet
    text: str
    parent: _Cand | None

    @property
    def identifier(self) -> str:
        return f"{self.name}[{self.extra}]" if self.extra else self.name


@dataclass(frozen=True)
class _Cand:
    name: NormalizedName
    extra: str | None
    version: Version

    @property
    def identifier(self) -> str:
        return f"{self.name}[{self.extra}]" if self.extra else self.name

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


def _parse(text: str, where: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise AffineurError(
            f"invalid requirement {text!r} ({exc})", stage="resolve", package=where
        ) from None


def _expand(req: Requirement, text: str, parent: _Cand | None) -> list[_Req]:
    name = canonicalize_name(req.name)
    base = _Req(name, None, req.specifier, text, parent)
    return [
        base,
        *(
            _Req(name, canonicalize_name(e), req.specifier, text, parent)
            for e in sorted(req.extras)
        ),
    ]


def _marker_matches(marker: Marker | None, env: Mapping[str, str], extra: str) -> bool:
    return marker is None or marker.evaluate({**env, "extra": extra})


class _Provider(AbstractProvider[_Req, _Cand, str]):
    def __init__(self, source: CandidateSource, request: ResolveRequest) -> None:
        self.source = source
        self.request = request
        self.constraints: dict[str, SpecifierSet] = {}
        for text in request.constraints:
            req = _parse(text, request.constraint_origin)
            name = canonicalize_name(req.name)
            self.constraints[name] = self.constraints.get(name, SpecifierSet()) & req.specifier
        # Dependencies in the order the parent declared them, per candidate, so the
        # lock can record each edge with the requirement text that produced it.
        self.declared: dict[_Cand, list[_Req]] = {}

    def identify(self, requirement_or_candidate: _Req | _Cand) -> str:
        return requirement_or_candidate.identifier

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, _Cand],
        candidates: Mapping[str, Iterator[_Cand]],
        information: Mapping[str, Iterator[Any]],
        backtrack_causes: Sequence[Any],
    ) -> tuple[bool, bool, bool, str]:
        infos = list(information[identifier])
        in_conflict = any(c.requirement.name == identifier.split("[")[0] for c in backtrack_causes)
        pinned = any(s.operator in ("==", "===") for i in infos for s in i.requirement.specifier)
        toplevel = any(i.parent is None for i in infos)
        # Work on conflicting, pinned and top-level names first: they narrow the
        # search most and backtracking on them is cheapest.
        return (not in_conflict, not pinned, not toplevel, identifier)

    def _allowed(
        self, name: NormalizedName, spec: SpecifierSet, info: VersionInfo, exact_pins: set[Version]
    ) -> bool:
        if info.yanked and info.version not in exact_pins:
            return False  # PEP 592: yanked only when pinned exactly
        prereleases = self.request.allow_prereleases or bool(spec.prereleases)
        return spec.contains(info.version, prereleases=prereleases)

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[_Req]],
        incompatibilities: Mapping[str, Iterator[_Cand]],
    ) -> list[_Cand]:
        reqs = list(requirements[identifier])
        name = canonicalize_name(identifier.split("[")[0])
        extra = identifier[len(name) + 1 : -1] if "[" in identifier else None
        spec = SpecifierSet()
        for r in reqs:
            spec &= r.specifier
        # A base candidate must also satisfy what its extras asked for.
        if extra is None:
            for other, more in requirements.items():
                if other.startswith(f"{name}["):
                    for r in more:
                        spec &= r.specifier
        spec &= self.constraints.get(name, SpecifierSet())
        exact_pins = {
            Version(s.version) for s in spec if s.operator in ("==", "===") and "*" not in s.version
        }
        bad = {c.version for c in incompatibilities[identifier]}
        infos = [
            i
            for i in self.source.versions(name)
            if i.version not in bad and self._allowed(name, spec, i, exact_pins)
        ]
        preferred = self.request.preferred.get(name)
        infos.sort(key=lambda i: (i.version == preferred, i.version), reverse=True)
        return [_Cand(name, extra, i.version) for i in infos]

    def is_satisfied_by(self, requirement: _Req, candidate: _Cand) -> bool:
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate: _Cand) -> list[_Req]:
        deps: list[_Req] = []
        if candidate.extra is not None:
            pin = f"{candidate.name}=={candidate.version}"
            deps.append(
                _Req(candidate.name, None, SpecifierSet(f"=={candidate.version}"), pin, candidate)
            )
        where = str(candidate)
        for text in self.source.dependencies(candidate.name, candidate.version):
            req = _parse(text, where)
            if not _marker_matches(req.marker, self.request.environment, candidate.extra or ""):
                continue
            if candidate.extra is not None and _marker_matches(
                req.marker, self.request.environment, ""
            ):
                continue  # the base candidate already carries it
            deps.extend(_expand(req, text, candidate))
        self.declared[candidate] = deps
        return deps


def _describe_conflict(
    exc: ResolutionImpossible[_Req, _Cand], request: ResolveRequest, provider: _Provider
) -> AffineurError:
    causes: list[str] = []
    names: list[NormalizedName] = []
    infos = list(exc.causes)
    for info in infos:
        req: _Req = info.requirement
        who = "the collection" if info.parent is None else str(info.parent)
        causes.append(f"{req.text} (required by {who})")
        names.append(req.name)
    for name in dict.fromkeys(names):
        if name in provider.constraints:
            causes.append(
                f"{name}{provider.constraints[name]} (constraint from {request.constraint_origin})"
            )
        available = sorted(i.version for i in provider.source.versions(name))
        if len(set(names)) == 1:
            shown = ", ".join(str(v) for v in available[-8:]) or "none"
            causes.append(f"available versions of {name}: {shown}")
    if len(set(names)) == 1 and len(infos) == 1:
        message = f"no version of {names[0]} satisfies {infos[0].requirement.text}"
    else:
        message = "conflicting requirements: " + "; ".join(
            c for c in causes if not c.startswith("available")
        )
    return AffineurError(
        message,
        stage="resolve",
        package=names[0] if names else None,
        causes=tuple(causes),
        hint="relax one of these requirements, or add a constraint that both accept",
    )


def resolve(
    source: CandidateSource,
    request: ResolveRequest,
    reporter: BaseReporter[_Req, _Cand, str] | None = None,
) -> Resolution:
    """Resolve ``request.requirements`` into one version per project, jointly."""
    provider = _Provider(source, request)
    roots: list[_Req] = []
    for text in request.requirements:
        req = _parse(text, "the collection")
        if _marker_matches(req.marker, request.environment, ""):
            roots.extend(_expand(req, text, None))
    resolver = Resolver(provider, reporter or BaseReporter())
    try:
        result = resolver.resolve(roots, max_rounds=20000)
    except ResolutionImpossible as exc:
        raise _describe_conflict(exc, request, provider) from None
    except ResolutionTooDeep:
        raise AffineurError(
            "resolution did not finish (too much backtracking)",
            stage="resolve",
            hint="add constraints to narrow the choice",
        ) from None

    versions: dict[NormalizedName, Version] = {}
    extras: dict[NormalizedName, set[str]] = {}
    for cand in result.mapping.values():
        versions[cand.name] = cand.version
        if cand.extra:
            extras.setdefault(cand.name, set()).add(cand.extra)

    deps: list[Dependency] = []
    seen: set[tuple[str | None, str, str]] = set()

    def add(parent: NormalizedName | None, reqs: Iterable[_Req]) -> None:
        for r in reqs:
            if r.parent is not None and r.parent.name == r.name:
                continue  # an extra's pin on its own base
            item = (parent, r.name, r.text)
            if item not in seen:
                seen.add(item)
                deps.append(Dependency(parent, r.name, versions[r.name], r.text))

    add(None, roots)
    for cand in sorted(result.mapping.values(), key=lambda c: c.identifier):
        add(cand.name, provider.declared.get(cand, ()))
    return Resolution(
        versions=versions,
        extras={k: frozenset(v) for k, v in extras.items()},
        dependencies=tuple(deps),
    )
