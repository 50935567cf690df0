"""Loading and checking collections, variants and overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.markers import default_environment

from affineur.config import Variant, _schema, load_project, target_environment, validate
from affineur.errors import AffineurError
from tests.paths import REPO

GOOD_COLLECTION = """\
description = "web things"
variants = ["cpu"]
requirements = ["requests>=2", "idna[all]; python_version >= '3.8'"]
constraints = ["urllib3<3"]

[options]
prereleases = true
"""

GOOD_VARIANT = """\
description: CPU-only builds
python: "3.11"
platform: {sys_platform: linux, platform_machine: aarch64}
indexes: ["http://127.0.0.1:8080/simple"]
discovery: source
env: {CFLAGS: "-O2"}
resources: {cpu: 2, memory_gb: 16, gpu: 0}
defaults:
  constraints: ["setuptools<80"]
changelog: ["rebuild everything with -O2"]
timeout: 3600
network_isolation: false
"""

GOOD_OVERRIDE = """\
env: {FOO: "${version}"}
config_settings: {"--build-option": ["--x"], "mode": "fast"}
build_dir: subdir
build_requires: {add: ["cython<3"], remove: ["wheel"], replace: {"setuptools": "setuptools<70"}}
constraints: ["setuptools<70"]
prebuilt: false
download_source: "https://example.invalid/${name}-${version}.tar.gz"
resources: {exclusive: true}
changelog: {"1.2.3": ["rebuilt with the CVE fix"]}
timeout: 600
variants:
  cpu: {env: {USE_CUDA: "0"}}
versions:
  ">=2.0": {env: {NEW: "1"}}
"""


def make_project(root: Path, files: dict[str, str]) -> Path:
    """A project with one good collection and variant, plus or replaced by ``files``."""
    layout = {
        "collections/web.toml": GOOD_COLLECTION,
        "variants/cpu.yaml": GOOD_VARIANT,
        **files,
    }
    for rel, text in layout.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (root / "overrides").mkdir(exist_ok=True)
    return root


def load_error(root: Path, files: dict[str, str]) -> AffineurError:
    with pytest.raises(AffineurError) as info:
        load_project(make_project(root, files))
    assert info.value.stage == "config"
    return info.value


def test_good_files_load(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path, {"overrides/Foo_Bar.yaml": GOOD_OVERRIDE}))

    web = project.collections["web"]
    assert web.requirements == ("requests>=2", "idna[all]; python_version >= '3.8'")
    assert web.constraints == ("urllib3<3",)
    assert web.variants == ("cpu",)
    assert web.prereleases is True
    assert web.file == tmp_path / "collections" / "web.toml"

    cpu = project.variants["cpu"]
    assert cpu.python == "3.11"
    assert dict(cpu.platform) == {"sys_platform": "linux", "platform_machine": "aarch64"}
    assert cpu.indexes == ("http://127.0.0.1:8080/simple",)
    assert cpu.discovery == "source"
    assert dict(cpu.resources) == {"cpu": 2.0, "memory_gb": 16.0, "gpu": 0.0}
    assert cpu.defaults["constraints"] == ("setuptools<80",)
    assert cpu.changelog == ("rebuild everything with -O2",)
    assert cpu.timeout == 3600.0
    assert cpu.network_isolation is False

    override = project.overrides["foo-bar"]
    assert override.name == "foo-bar"
    assert override.raw["versions"][">=2.0"]["env"]["NEW"] == "1"
    assert project.override_for("FOO.bar") is override


def test_loaded_config_is_read_only(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path, {"overrides/foo.yaml": GOOD_OVERRIDE}))
    with pytest.raises(TypeError):
        project.overrides["foo"].raw["env"]["FOO"] = "x"  # type: ignore[index]


def test_variant_defaults(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path, {"variants/cpu.yaml": ""}))
    cpu = project.variants["cpu"]
    assert cpu.python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert cpu.discovery == "wheels"
    assert cpu.network_isolation is True
    assert cpu.timeout is None
    assert cpu.indexes == ()


def test_extends_merges_dicts_deeply_and_replaces_lists(tmp_path: Path) -> None:
    project = load_project(
        make_project(
            tmp_path,
            {
                "collections/web.toml": GOOD_COLLECTION.replace('["cpu"]', '["cuda"]'),
                "variants/cuda.yaml": """\
                    extends: cpu
                    env: {CUDA_HOME: /opt/cuda}
                    resources: {gpu: 1}
                    changelog: ["cuda 12"]
                    defaults: {env: {X: "1"}}
                    """,
            },
        )
    )
    cuda = project.variants["cuda"]
    assert dict(cuda.env) == {"CFLAGS": "-O2", "CUDA_HOME": "/opt/cuda"}
    assert dict(cuda.resources) == {"cpu": 2.0, "memory_gb": 16.0, "gpu": 1.0}
    assert cuda.changelog == ("cuda 12",)
    assert dict(cuda.defaults["env"]) == {"X": "1"}
    assert cuda.defaults["constraints"] == ("setuptools<80",)
    assert cuda.python == "3.11"
    assert cuda.file == tmp_path / "variants" / "cuda.yaml"


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"variants/cpu.yaml": 'python: "3.11"\ndiscovry: wheels\n'})
    assert error.message == "unknown key 'discovry'"
    assert error.hint == "did you mean 'discovery'?"
    assert error.file == str(tmp_path / "variants" / "cpu.yaml")
    assert tuple(error.key_path) == ("discovry",)
    assert error.line == 2


def test_unknown_nested_key_in_override(tmp_path: Path) -> None:
    error = load_error(
        tmp_path, {"overrides/foo.yaml": "versions:\n  '>=1':\n    build_requries: {}\n"}
    )
    assert error.message == "unknown key 'build_requries'"
    assert error.hint == "did you mean 'build_requires'?"
    assert tuple(error.key_path) == ("versions", ">=1", "build_requries")
    assert error.line == 3


def test_wrong_type_says_what_was_expected(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"variants/cpu.yaml": "python: 3.10\n"})
    assert error.message == "expected a string, got the number 3.1"
    assert error.hint == "quote the value so it is read as a string"
    assert tuple(error.key_path) == ("python",)
    assert error.line == 1


def test_bad_enum_value(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"variants/cpu.yaml": "discovery: wheel\n"})
    assert error.message == "expected one of 'wheels', 'source', got the string 'wheel'"
    assert error.hint == "did you mean 'wheels'?"


def test_bad_requirement_string(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        {"collections/web.toml": 'variants = ["cpu"]\nrequirements = ["requests >>= 2"]\n'},
    )
    assert error.message.startswith("invalid requirement 'requests >>= 2'")
    assert tuple(error.key_path) == ("requirements", 0)
    assert error.line == 2


def test_constraint_with_extras(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        {
            "collections/web.toml": (
                'variants = ["cpu"]\nrequirements = ["a"]\nconstraints = ["b[x]<2"]\n'
            )
        },
    )
    assert error.message == "constraint 'b[x]<2' must not have extras"
    assert tuple(error.key_path) == ("constraints", 0)


def test_unknown_variant_in_collection(tmp_path: Path) -> None:
    error = load_error(
        tmp_path, {"collections/web.toml": 'variants = ["cpuu"]\nrequirements = ["a"]\n'}
    )
    assert error.message == "unknown variant 'cpuu'"
    assert error.hint == "did you mean 'cpu'?"
    assert error.line == 1


def test_unknown_variant_in_override(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"overrides/foo.yaml": "variants:\n  rocm: {}\n"})
    assert error.message == "unknown variant 'rocm'"
    assert error.hint == "known variants: cpu"
    assert tuple(error.key_path) == ("variants", "rocm")


def test_extends_loop_is_reported_as_its_path(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        {
            "variants/a.yaml": "extends: b\n",
            "variants/b.yaml": "extends: c\n",
            "variants/c.yaml": "extends: a\n",
        },
    )
    assert error.message == "extends loop: a -> b -> c -> a"
    assert error.file == str(tmp_path / "variants" / "a.yaml")
    assert not error.causes  # one loop, one problem, not one per member


def test_extends_unknown_variant(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"variants/gpu.yaml": "extends: cpy\n"})
    assert error.message == "unknown variant 'cpy'"
    assert error.hint == "did you mean 'cpu'?"
    assert tuple(error.key_path) == ("extends",)


def test_missing_required_key(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"collections/web.toml": 'requirements = ["a"]\n'})
    assert error.message == "missing required key 'variants'"


def test_no_variants(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"collections/web.toml": 'variants = []\nrequirements = ["a"]\n'})
    assert error.message == "expected at least 1 item(s), got 0"
    assert tuple(error.key_path) == ("variants",)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"variants/cpu.yaml": 'python: "3.11"\nenv: {A: 1\nx: 2\n'})
    assert error.message.startswith("invalid YAML:")
    assert error.line == 3


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    error = load_error(
        tmp_path, {"collections/web.toml": 'variants = ["cpu"]\nrequirements = "a\n'}
    )
    assert error.message.startswith("invalid TOML:")
    assert "line" not in error.message  # the line is a field, not buried in the text
    assert error.line == 2


def test_negative_resource(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"variants/cpu.yaml": "resources: {cpu: 2, gpu: -1}\n"})
    assert error.message == "expected a number >= 0, got the number -1"
    assert tuple(error.key_path) == ("resources", "gpu")


def test_override_resources_exclusive_must_be_boolean(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"overrides/foo.yaml": "resources: {exclusive: 1}\n"})
    assert error.message == "expected true or false, got the number 1"


def test_bad_specifier_key_in_versions(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"overrides/foo.yaml": "versions:\n  '>=2.0,<': {}\n"})
    assert error.message == "invalid version specifier '>=2.0,<'"
    assert tuple(error.key_path) == ("versions", ">=2.0,<")
    assert error.line == 2


@pytest.mark.parametrize(
    ("build_dir", "message"),
    [
        ("/abs", "build_dir '/abs' must be a relative path inside the sdist"),
        ("C:/x", "build_dir 'C:/x' must be a relative path inside the sdist"),
        ("a/../../b", "build_dir 'a/../../b' must not contain '..'"),
    ],
)
def test_build_dir_stays_inside_the_sdist(tmp_path: Path, build_dir: str, message: str) -> None:
    text = f"variants:\n  cpu: {{build_dir: '{build_dir}'}}\n"
    error = load_error(tmp_path, {"overrides/foo.yaml": text})
    assert error.message == message
    assert tuple(error.key_path) == ("variants", "cpu", "build_dir")


def test_bad_build_requires_entries(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        {"overrides/foo.yaml": "build_requires: {remove: ['wheel<1'], replace: {x: 'x >'}}\n"},
    )
    foo = tmp_path / "overrides" / "foo.yaml"
    assert len(error.causes) == 2
    assert error.causes[0] == (
        f"{foo}:1: build_requires.remove.0: 'wheel<1' is not a valid package name"
    )
    assert error.causes[1].startswith(
        f"{foo}:1: build_requires.replace.x: invalid requirement 'x >': "
    )


def test_duplicate_canonical_override_names(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"overrides/Foo_Bar.yaml": "", "overrides/foo-bar.yaml": ""})
    assert error.message == "Foo_Bar.yaml and foo-bar.yaml both configure package 'foo-bar'"
    assert error.hint == "merge them into one file"


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"overrides/foo.yaml": "timeout: 1\nenv: {}\ntimeout: 2\n"})
    assert error.message == "duplicate key 'timeout'"
    assert error.line == 3


def test_non_string_yaml_key(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"overrides/foo.yaml": "changelog:\n  1.10: [fixed]\n"})
    assert error.message == "key '1.10' is not a string"
    assert error.hint == "quote it"


def test_yml_suffix_is_not_silently_ignored(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"overrides/foo.yml": "timeout: 1\n"})
    assert error.message == "config files must end in .yaml"
    assert error.hint == "rename it to foo.yaml"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"variants/cpu.yaml": "- a\n- b\n"})
    assert error.message == "expected a mapping, got a list"


def test_all_problems_of_all_files_reported_together(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        {
            "collections/web.toml": 'variants = ["cpu"]\nrequirements = ["a"]\ndescripton = "x"\n',
            "variants/cpu.yaml": "timeout: -5\nnetwork_isolation: yes please\n",
        },
    )
    web = tmp_path / "collections" / "web.toml"
    cpu = tmp_path / "variants" / "cpu.yaml"
    assert error.message == "unknown key 'descripton' (and 2 more problems)"
    assert error.hint == "did you mean 'description'?"
    assert list(error.causes) == [
        f"{web}:3: descripton: unknown key 'descripton' (did you mean 'description'?)",
        f"{cpu}:1: timeout: expected a number > 0, got the number -5",
        f"{cpu}:2: network_isolation: expected true or false, got the string 'yes please'",
    ]


def test_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(AffineurError, match="not an affineur project"):
        load_project(tmp_path)


def test_validate_for_other_schemas_raises_located_error() -> None:
    with pytest.raises(AffineurError) as info:
        validate(
            {"descripton": "x"},
            "collection",
            file="c.toml",
            lines={(): 1, ("descripton",): 4},
        )
    assert info.value.message == "missing required key 'variants' (and 2 more problems)"
    assert info.value.causes == (
        "c.toml:1: missing required key 'variants'",
        "c.toml:1: missing required key 'requirements'",
        "c.toml:4: descripton: unknown key 'descripton' (did you mean 'description'?)",
    )


def _variant(python: str, platform: dict[str, str]) -> Variant:
    return Variant(
        name="v",
        description="",
        python=python,
        platform=platform,
        indexes=(),
        discovery="wheels",
        env={},
        resources={},
        defaults={},
        changelog=(),
        timeout=None,
        network_isolation=True,
        file=Path("variants/v.yaml"),
    )


def test_target_describes_the_variant_not_the_kernel_it_was_locked_on() -> None:
    host = {k: str(v) for k, v in default_environment().items()}
    laptop = {**host, "platform_release": "5.15.0-91-generic", "platform_version": "#101 SMP"}
    runner = {**host, "platform_release": "6.18.44", "platform_version": "#1 SMP PREEMPT_DYNAMIC"}
    runner["python_full_version"] = runner["implementation_version"] = "3.11.99"
    variant = _variant("3.11", {})
    target = target_environment(variant, laptop)
    assert target == target_environment(variant, runner)
    assert "platform_release" not in target and "platform_version" not in target
    # X.Y stands for the whole series, as installers read a target Python.
    assert target["python_version"] == "3.11"
    assert target["python_full_version"] == "3.11.0"
    declared = target_environment(_variant("3.11", {"python_full_version": "3.11.7"}), laptop)
    assert declared["python_full_version"] == "3.11.7"


def test_target_environment_for_another_python_and_platform() -> None:
    env = target_environment(_variant("3.8", {"sys_platform": "win32", "os_name": "nt"}))
    assert env["python_version"] == "3.8"
    assert env["python_full_version"] == "3.8.0"
    assert env["sys_platform"] == "win32"
    assert env["os_name"] == "nt"


def test_shipped_example_project_loads() -> None:
    project = load_project(REPO)
    assert project.collections["example"].requirements == ("requests",)
    cpu = project.variants["cpu"]
    assert cpu.python == "3.11"
    assert dict(cpu.resources) == {"cpu": 2.0, "memory_gb": 8.0}


def test_unknown_key_in_a_toml_table_is_located(tmp_path: Path) -> None:
    text = 'variants = ["cpu"]\nrequirements = ["a"]\n\n[options]\nprerelease = true\n'
    error = load_error(tmp_path, {"collections/web.toml": text})
    assert error.message == "unknown key 'prerelease'"
    assert error.hint == "did you mean 'prereleases'?"
    assert tuple(error.key_path) == ("options", "prerelease")
    assert error.line == 5


def test_the_kernel_in_a_variant_is_refused_with_a_reason(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        {"variants/cpu.yaml": "platform: {platform_release: '6.1', sys_platform: linux}\n"},
    )
    assert error.message == "platform_release describes the machine that locks, not the target"
    assert error.hint is not None and "kernel" in error.hint


# --- checking a config once, and the schemas themselves --------------------------------


def test_every_schema_is_a_valid_json_schema() -> None:
    from jsonschema import Draft202012Validator

    schemas = sorted((REPO / "schemas").glob("*.schema.json"))
    assert schemas
    for path in schemas:
        Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_a_config_that_passed_is_not_checked_again_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "p", {"overrides/foo.yaml": GOOD_OVERRIDE})
    memo = tmp_path / "memo"
    first = load_project(root, memo=memo)
    assert len(list(memo.iterdir())) == 3  # collection, variant, override

    def no_check(*args: object, **kwargs: object) -> list[AffineurError]:
        raise AssertionError("an unchanged file was checked again")

    monkeypatch.setattr(_schema, "_problems", no_check)
    assert load_project(root, memo=memo) == first
    monkeypatch.undo()
    # A changed file is checked, and a bad change is still refused.
    (root / "variants" / "cpu.yaml").write_text(GOOD_VARIANT + "timeout: -1\n")
    with pytest.raises(AffineurError) as info:
        load_project(root, memo=memo)
    assert info.value.file == str(root / "variants" / "cpu.yaml")
    assert len(list(memo.iterdir())) == 3


def test_checking_a_document_skips_the_iri_format_grammars() -> None:
    """Every command checks some document; rfc3987-syntax would add ~3 s of CPU to each.

    jsonschema compiles that package's grammars when it is imported and the package
    is installed (the test extra installs it); affineur checks no formats, so its
    validation imports jsonschema without it, and leaves it importable afterwards
    (no placeholder left in ``sys.modules``; importing it here would cost the 3 s).
    """
    code = textwrap.dedent(
        """
        import sys
        from affineur.config import validate
        validate({"description": "x"}, "variant", file="variants/x.yaml")
        assert "jsonschema" in sys.modules, "nothing was checked"
        assert "rfc3987_syntax" not in sys.modules, "compiled, or left unimportable"
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
