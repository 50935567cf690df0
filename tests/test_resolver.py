"""Joint resolution against an in-memory index (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from packaging.markers import default_environment
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from affineur.errors import AffineurError
from affineur.lock import ResolveRequest, resolve
from affineur.lock._resolver import VersionInfo

ENV = {**default_environment(), "python_version": "3.11", "sys_platform": "linux"}


class MemorySource:
    """{name: {version: [requires-dist...]}}; versions prefixed with '!' are yanked."""

    def __init__(self, index: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
        self.index = {
            canonicalize_name(n): {
                Version(v.lstrip("!")): (v.startswith("!"), deps) for v, deps in vs.items()
            }
            for n, vs in index.items()
        }
        self.metadata_calls: list[str] = []

    def versions(self, name: NormalizedName) -> list[VersionInfo]:
        if name not in self.index:
            raise AffineurError("no such project", package=name, stage="index")
        return [VersionInfo(v, yanked=y) for v, (y, _) in self.index[name].items()]

    def dependencies(self, name: NormalizedName, version: Version) -> Sequence[str]:
        self.metadata_calls.append(f"{name}=={version}")
        return self.index[name][version][1]


def run(index: Mapping[str, Mapping[str, Sequence[str]]], *reqs: str, **kw: object):
    return resolve(MemorySource(index), ResolveRequest(requirements=reqs, environment=ENV, **kw))


def pins(resolution) -> dict[str, str]:
    return {n: str(v) for n, v in resolution.versions.items()}


def test_picks_newest_compatible_versions_jointly() -> None:
    index = {
        "app": {"1.0": ["lib>=1", "util"]},
        "lib": {"1.0": [], "2.0": ["util<2"]},
        "util": {"1.5": [], "2.0": []},
    }
    # util 2.0 is newest, but lib 2.0 needs util<2: a joint resolution has to see both.
    assert pins(run(index, "app")) == {"app": "1.0", "lib": "2.0", "util": "1.5"}


def test_backtracks_out_of_a_dead_end() -> None:
    index = {
        "app": {"1.0": ["a", "b"]},
        "a": {"1.0": ["c<2"], "2.0": ["c>=3"]},
        "b": {"1.0": ["c<3"]},
        "c": {"1.0": [], "2.5": [], "3.0": []},
    }
    assert pins(run(index, "app")) == {"app": "1.0", "a": "1.0", "b": "1.0", "c": "1.0"}


def test_extras_and_markers() -> None:
    index = {
        "app": {
            "1.0": ["lib[fast]", 'old; python_version < "3.0"', 'linux; sys_platform == "linux"']
        },
        "lib": {"1.0": ['speedup; extra == "fast"', 'docs; extra == "docs"']},
        "speedup": {"1.0": []},
        "docs": {"1.0": []},
        "old": {"1.0": []},
        "linux": {"1.0": []},
    }
    res = run(index, "app")
    assert pins(res) == {"app": "1.0", "lib": "1.0", "speedup": "1.0", "linux": "1.0"}
    assert res.extras == {"lib": frozenset({"fast"})}
    lib_edges = {(d.name, d.req) for d in res.requirements_of(canonicalize_name("lib"))}
    assert lib_edges == {("speedup", 'speedup; extra == "fast"')}


def test_yanked_only_when_pinned_exactly() -> None:
    index = {"multi": {"1.0": [], "!1.1": []}}
    assert pins(run(index, "multi")) == {"multi": "1.0"}
    assert pins(run(index, "multi==1.1")) == {"multi": "1.1"}


def test_prereleases_only_when_asked_or_named() -> None:
    index = {"multi": {"1.0": [], "2.1rc1": []}}
    assert pins(run(index, "multi")) == {"multi": "1.0"}
    assert pins(run(index, "multi", allow_prereleases=True)) == {"multi": "2.1rc1"}
    assert pins(run(index, "multi>=2.1rc1")) == {"multi": "2.1rc1"}


def test_constraints_and_preferred_versions() -> None:
    index = {"app": {"1.0": ["lib"]}, "lib": {"1.0": [], "2.0": [], "3.0": []}}
    assert pins(run(index, "app", constraints=["lib<3"])) == {"app": "1.0", "lib": "2.0"}
    preferred = {canonicalize_name("lib"): Version("1.0")}
    assert pins(run(index, "app", preferred=preferred))["lib"] == "1.0"
    # A preference never overrides a requirement.
    assert pins(run(index, "app", "lib>=2", preferred=preferred))["lib"] == "3.0"


def test_conflict_names_both_requirements_and_who_asked() -> None:
    index = {
        "conflict-x": {"1.0": ["shared<2"]},
        "conflict-y": {"1.0": ["shared>=2"]},
        "shared": {"1.0": [], "2.0": []},
    }
    with pytest.raises(AffineurError) as info:
        run(index, "conflict-x", "conflict-y")
    err = info.value
    assert err.stage == "resolve"
    assert "shared<2 (required by conflict-x==1.0)" in err.message
    assert "shared>=2 (required by conflict-y==1.0)" in err.message


def test_conflict_with_a_constraint_names_the_constraint_file() -> None:
    index = {"app": {"1.0": ["lib>=2"]}, "lib": {"1.0": [], "2.0": []}}
    with pytest.raises(AffineurError) as info:
        run(index, "app", constraints=["lib<2"], constraint_origin="collections/c.toml")
    assert any("constraint from collections/c.toml" in c for c in info.value.causes)


def test_missing_version_lists_what_exists() -> None:
    with pytest.raises(AffineurError) as info:
        run({"lib": {"1.0": [], "1.2": []}}, "lib>=5")
    assert info.value.message == "no version of lib satisfies lib>=5"
    assert "available versions of lib: 1.0, 1.2" in info.value.causes


def test_only_pinned_candidates_have_their_metadata_read() -> None:
    index = {"app": {"1.0": ["lib"]}, "lib": {str(v): [] for v in range(1, 30)}}
    source = MemorySource(index)
    resolve(source, ResolveRequest(requirements=["app"], environment=ENV))
    assert source.metadata_calls == ["app==1.0", "lib==29"]
