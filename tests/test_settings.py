"""Merging package settings and expanding their environment templates."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from affineur.config import (
    PackageOverride,
    Settings,
    Variant,
    effective_settings,
    expand_env,
    load_project,
)
from affineur.errors import AffineurError


def variant(name: str = "cpu", **fields: Any) -> Variant:
    values: dict[str, Any] = {
        "description": "",
        "python": "3.11",
        "platform": {},
        "indexes": (),
        "discovery": "wheels",
        "env": {},
        "resources": {},
        "defaults": {},
        "changelog": (),
        "timeout": None,
        "network_isolation": True,
        "file": Path(f"variants/{name}.yaml"),
        **fields,
    }
    return Variant(name=name, **values)


def override(raw: Mapping[str, Any]) -> PackageOverride:
    return PackageOverride(name="foo", raw=raw, file=Path("overrides/foo.yaml"))


def test_without_any_settings_the_builtin_defaults_apply() -> None:
    settings = effective_settings(variant=variant(), override=None, version="1.0")
    assert settings == Settings()
    assert settings.prebuilt is False
    assert settings.build_dir is None


def test_layers_merge_in_order() -> None:
    cpu = variant(
        defaults={"env": {"A": "defaults", "B": "defaults"}, "timeout": 10, "build_dir": "d"},
        env={"B": "variant", "C": "variant"},
        timeout=20.0,
    )
    foo = override(
        {
            "env": {"C": "package", "D": "package"},
            "timeout": 30,
            "variants": {"cpu": {"env": {"D": "package-variant", "E": "package-variant"}}},
            "versions": {">=1": {"env": {"E": "version"}, "build_dir": "v"}},
        }
    )
    settings = effective_settings(variant=cpu, override=foo, version="1.5")
    assert dict(settings.env) == {
        "A": "defaults",
        "B": "variant",
        "C": "package",
        "D": "package-variant",
        "E": "version",
    }
    assert settings.timeout == 30.0
    assert settings.build_dir == "v"


def test_variant_timeout_replaces_the_defaults_one() -> None:
    cpu = variant(defaults={"timeout": 10}, timeout=20.0)
    assert effective_settings(variant=cpu, override=None, version=None).timeout == 20.0


def test_only_the_variants_own_block_applies() -> None:
    foo = override(
        {"variants": {"cuda": {"prebuilt": True}, "cpu": {"config_settings": {"x": "1"}}}}
    )
    on_cpu = effective_settings(variant=variant("cpu"), override=foo, version="1.0")
    on_cuda = effective_settings(variant=variant("cuda"), override=foo, version="1.0")
    assert (on_cpu.prebuilt, dict(on_cpu.config_settings)) == (False, {"x": "1"})
    assert (on_cuda.prebuilt, dict(on_cuda.config_settings)) == (True, {})


def test_every_matching_version_range_applies_in_file_order() -> None:
    foo = override(
        {
            "versions": {
                ">=2": {"env": {"X": "ge2"}, "constraints": ["a<2"]},
                "<3": {"env": {"X": "lt3"}, "constraints": ["b<3"]},
                ">=3": {"env": {"X": "ge3"}, "constraints": ["c<4"]},
            }
        }
    )
    settings = effective_settings(variant=variant(), override=foo, version="2.5")
    assert dict(settings.env) == {"X": "lt3"}
    assert settings.constraints == ("a<2", "b<3")

    newer = effective_settings(variant=variant(), override=foo, version="3.0")
    assert dict(newer.env) == {"X": "ge3"}
    assert newer.constraints == ("a<2", "c<4")


def test_version_ranges_match_pre_releases() -> None:
    foo = override({"versions": {">=2.0": {"prebuilt": True}}})
    assert effective_settings(variant=variant(), override=foo, version="2.1rc1").prebuilt


def test_without_a_version_no_version_range_applies() -> None:
    foo = override({"versions": {">=0": {"prebuilt": True}}, "changelog": {"1.0": ["x"]}})
    settings = effective_settings(variant=variant(changelog=("g",)), override=foo, version=None)
    assert settings.prebuilt is False
    assert settings.changelog == ("g",)


def test_lists_concatenate_and_mappings_merge() -> None:
    cpu = variant(
        defaults={
            "constraints": ["setuptools<80"],
            "build_requires": {"add": ["a"], "replace": {"s": "s<1"}},
            "resources": {"cpu": 1},
        }
    )
    foo = override(
        {
            "constraints": ["wheel<1"],
            "build_requires": {"add": ["b"], "remove": ["w"], "replace": {"s": "s<2", "t": "t"}},
            "resources": {"exclusive": True, "memory_gb": 4},
            "config_settings": {"--opt": ["a", "b"]},
        }
    )
    settings = effective_settings(variant=cpu, override=foo, version="1.0")
    assert settings.constraints == ("setuptools<80", "wheel<1")
    assert settings.build_requires.add == ("a", "b")
    assert settings.build_requires.remove == ("w",)
    assert dict(settings.build_requires.replace) == {"s": "s<2", "t": "t"}
    assert dict(settings.resources) == {"cpu": 1.0, "exclusive": True, "memory_gb": 4.0}
    assert dict(settings.config_settings) == {"--opt": ("a", "b")}


def test_changelog_is_variant_entries_then_this_versions_entries() -> None:
    cpu = variant(changelog=("rebuild with -O2",), defaults={"changelog": {"1.2": ["d"]}})
    foo = override(
        {
            "changelog": {"1.2.0": ["cve fix"], "1.3": ["later"]},
            "versions": {">=1": {"changelog": {"1.2": ["range"]}}},
        }
    )
    settings = effective_settings(variant=cpu, override=foo, version="1.2")
    assert settings.changelog == ("rebuild with -O2", "d", "cve fix", "range")
    other = effective_settings(variant=cpu, override=foo, version="1.4")
    assert other.changelog == ("rebuild with -O2",)


def test_to_json_is_canonical_and_tracks_every_setting() -> None:
    foo = override({"env": {"B": "2", "A": "1"}, "config_settings": {"z": ["1"], "a": "x"}})
    settings = effective_settings(variant=variant(), override=foo, version="1.0")
    data = settings.to_json()
    assert list(data["env"]) == ["A", "B"]
    assert data["config_settings"] == {"a": "x", "z": ["1"]}
    assert list(data) == sorted(data)
    assert json.loads(json.dumps(data)) == data

    changed = effective_settings(
        variant=variant(), override=override({**foo.raw, "timeout": 5}), version="1.0"
    )
    assert changed.to_json() != data


def test_invalid_version_is_reported() -> None:
    with pytest.raises(AffineurError) as info:
        effective_settings(variant=variant(), override=override({}), version="not a version")
    assert info.value.message == "version 'not a version' is not a PEP 440 version"
    assert info.value.package == "foo"


def test_settings_from_loaded_files(tmp_path: Path) -> None:
    """The merge works on what load_project produces (read-only mappings and tuples)."""
    files = {
        "collections/c.toml": 'variants = ["cpu"]\nrequirements = ["foo"]\n',
        "variants/cpu.yaml": "env: {CFLAGS: -O2}\ndefaults: {constraints: [x<1]}\n",
        "overrides/Foo.yaml": "constraints: [y<1]\nversions: {'>=1': {env: {V: '${version}'}}}\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    project = load_project(tmp_path)
    settings = effective_settings(
        variant=project.variants["cpu"], override=project.override_for("foo"), version="1.0"
    )
    assert settings.constraints == ("x<1", "y<1")
    assert dict(settings.env) == {"CFLAGS": "-O2", "V": "${version}"}


def test_expand_env_substitutes_package_and_environment_variables() -> None:
    env = {
        "VERSION": "${version}",
        "PATH": "/opt/${name}/bin:${PATH}",
        "ROOT": "/opt/${name}",
        "LIB": "${ROOT}/lib",
        "PRICE": "$$5 ${HOME}",
    }
    expanded = expand_env(
        env, version="1.2", name="foo", base_env={"PATH": "/usr/bin", "HOME": "/home/u"}
    )
    assert expanded == {
        "VERSION": "1.2",
        "PATH": "/opt/foo/bin:/usr/bin",
        "ROOT": "/opt/foo",
        "LIB": "/opt/foo/lib",
        "PRICE": "$5 /home/u",
    }


def test_expand_env_may_use_any_other_key_whatever_its_order() -> None:
    # Variant and package env are merged before expansion, so order carries no meaning.
    expanded = expand_env({"A": "${B}-a", "B": "x"}, version="1", name="foo", base_env={})
    assert expanded == {"A": "x-a", "B": "x"}
    assert list(expanded) == ["A", "B"]


def test_expand_env_refuses_a_loop() -> None:
    with pytest.raises(AffineurError) as info:
        expand_env({"A": "${B}", "B": "${A}"}, version="1", name="foo", base_env={})
    assert info.value.message == "env values refer to each other in a loop: A, B"


def test_expand_env_unknown_variable_names_the_key_and_suggests() -> None:
    with pytest.raises(AffineurError) as info:
        expand_env({"X": "a-${CUDA_HOM}"}, version="1", name="foo", base_env={"CUDA_HOME": "/c"})
    error = info.value
    assert error.message == "unknown variable ${CUDA_HOM} in 'a-${CUDA_HOM}'"
    assert tuple(error.key_path) == ("env", "X")
    assert error.hint == "did you mean 'CUDA_HOME'?"
    assert (error.package, error.version) == ("foo", "1")


@pytest.mark.parametrize("template", ["$(echo hi)", "`x` $HOME", "${HOME:-/tmp}", "end$"])
def test_expand_env_does_no_shell_evaluation(template: str) -> None:
    with pytest.raises(AffineurError) as info:
        expand_env({"X": template}, version="1", name="foo", base_env={"HOME": "/h"})
    assert info.value.message == f"invalid '$' in {template!r}"
    assert info.value.hint == "write ${NAME} for a variable and $$ for a literal '$'"
