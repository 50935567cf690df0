"""Canary: the doit internals the adapter relies on are still there, in the shape it expects.

affineur.run._doit is the only module that reaches past doit's documented API.
When a doit release moves any of it, these tests fail with a message that says
what moved, before a user's build does.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import tomllib
from importlib.metadata import version

from packaging.requirements import Requirement
from packaging.version import Version

from affineur.run import DOIT_VERSIONS
from tests.paths import REPO


def test_installed_doit_is_in_the_tested_range() -> None:
    installed = Version(version("doit"))
    declared = next(
        Requirement(r)
        for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        if Requirement(r).name == "doit"
    )
    assert str(declared.specifier) == str(Requirement(f"doit{DOIT_VERSIONS}").specifier), (
        "pyproject.toml's doit range and affineur.run._doit.DOIT_VERSIONS must agree"
    )
    assert declared.specifier.contains(installed), (
        f"doit {installed} is outside the tested range {DOIT_VERSIONS}: "
        "run this file against it, adapt affineur.run._doit, then widen the range"
    )


def test_the_runner_internals_the_resource_runner_uses() -> None:
    from doit import cmd_run, runner

    assert cmd_run.MThreadRunner is runner.MThreadRunner, (
        "doit's run command no longer picks its thread runner from cmd_run.MThreadRunner"
    )
    for name in ("_run_tasks_init", "select_task", "execute_task", "process_task_result"):
        assert callable(getattr(runner.MThreadRunner, name, None)), f"MThreadRunner.{name} is gone"
    init = inspect.signature(runner.MThreadRunner.__init__).parameters
    for name in ("dep_manager", "reporter", "continue_", "always_execute", "stream", "num_process"):
        assert name in init, f"MThreadRunner.__init__ lost its {name!r} parameter"
    source = inspect.getsource(runner.Runner)
    assert "_stop_running" in source and "task_dispatcher" in source
    assert '"hold on"' in inspect.getsource(__import__("doit.control").control), (
        "doit's task dispatcher no longer answers 'hold on' while tasks wait"
    )


def test_run_command_execute_takes_the_parameters_we_pass() -> None:
    from doit.cmd_run import Run

    from affineur.run import ResourceRun

    theirs = set(inspect.signature(Run._execute).parameters)
    own_options = {o["name"] for o in ResourceRun.cmd_options if o not in Run.cmd_options}
    ours = set(inspect.signature(ResourceRun._execute).parameters) - own_options
    assert theirs == ours, f"doit's Run._execute parameters changed: {sorted(theirs ^ ours)}"


def test_config_and_loader_internals() -> None:
    from doit import loader
    from doit.doit_cmd import DoitConfig

    assert hasattr(loader, "initial_workdir")
    config = DoitConfig()
    assert callable(config.loads) and isinstance(config.as_dict(), dict)


def test_the_command_line_never_loads_doit() -> None:
    # The affineur command drives a Checkout; only the dodo file needs doit.
    code = (
        "import sys; import affineur.cli._main; affineur.cli._main.build_parser(); "
        "from affineur.run import open_checkout, Checkout; "
        "assert not [m for m in sys.modules if m == 'doit' or m.startswith('doit.')], "
        "sorted(m for m in sys.modules if m.startswith('doit'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_progress_reporter_answers_every_call_doits_runner_makes() -> None:
    # It implements doit's reporter interface itself; a method doit adds would
    # otherwise surface as an AttributeError in the middle of a run.
    from doit.reporter import ConsoleReporter

    from affineur.run._doit_reporter import ProgressReporter

    wanted = {n for n in vars(ConsoleReporter) if not n.startswith("_") and n != "write"}
    wanted -= {"desc"}
    missing = sorted(n for n in wanted if not callable(getattr(ProgressReporter, n, None)))
    assert not missing, f"doit's reporter interface grew: {missing}"


def test_only_the_adapter_imports_doit() -> None:
    offenders = []
    for path in sorted((REPO / "src" / "affineur").rglob("*.py")):
        if path.name == "_doit.py":
            continue
        text = path.read_text()
        if "\nimport doit" in text or "\nfrom doit" in text:
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"doit is imported outside affineur/run/_doit.py: {offenders}"


def test_the_forget_command_takes_the_options_doits_forget_has() -> None:
    from doit.cmd_forget import Forget

    from affineur.run._doit import ForgetBuilds

    theirs = list(inspect.signature(Forget._execute).parameters)
    assert list(inspect.signature(ForgetBuilds._execute).parameters) == theirs
