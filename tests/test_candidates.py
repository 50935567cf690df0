"""The locker's candidate source: a name's versions are worked out once per lock."""

from __future__ import annotations

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from affineur.index import DistFile
from affineur.lock._candidates import IndexCandidates, _NoHook
from affineur.progress import NullReporter
from tests.frozen import FrozenIndex, settings_table


class _CountingIndex(FrozenIndex):
    def files(self, name: NormalizedName) -> list[DistFile]:
        self.calls.append(f"files {name}")
        return super().files(name)


def test_versions_are_read_from_the_index_once_and_answered_alike() -> None:
    index = _CountingIndex(
        {
            "lib": {
                "1.0": {},
                "2.0": {"yanked": True},
                "3.0": {"requires_python": ">=4"},
            }
        }
    )
    source = IndexCandidates(
        index,
        settings_for=settings_table(),
        python=Version("3.11"),
        hook=_NoHook(),
        reporter=NullReporter(),
    )
    name = canonicalize_name("lib")
    first = source.versions(name)
    assert [(i.version, i.yanked) for i in first] == [
        (Version("1.0"), False),
        (Version("2.0"), True),
    ]
    first.clear()  # a caller's list is its own
    assert source.versions(name) == source.versions(name) != []
    assert index.calls == ["files lib"]
