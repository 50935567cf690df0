"""Synthetic tasks for the scheduler tests, described by the JSON file in $SCHEDULER_SPEC.

Each task sleeps, then appends ``[name, start, end]`` to the spec's log. A task
with ``"kill": true`` SIGKILLs doit the first time it runs (a marker file
remembers), so a test can interrupt a run in the middle. A task with ``"hold":
PATH`` waits while that file exists, so a test decides when it ends.
"""

import json
import os
import signal
import time
from pathlib import Path

from doit.tools import config_changed

from affineur.run import doit_config

SPEC = json.loads(Path(os.environ["SCHEDULER_SPEC"]).read_text())
ROOT = Path(SPEC["root"])

DOIT_CONFIG = doit_config(SPEC["capacities"], root=ROOT, verbosity=0)


def work(task):
    if task.get("kill") and not (ROOT / "killed").exists():
        (ROOT / "killed").touch()
        os.kill(os.getpid(), signal.SIGKILL)
    start = time.time()
    while task.get("hold") and Path(task["hold"]).exists():
        time.sleep(0.02)
    time.sleep(task.get("seconds", 0.2))
    line = json.dumps([task["name"], start, time.time()]) + "\n"
    fd = os.open(ROOT / "log.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def task_work():
    for task in SPEC["tasks"]:
        yield {
            "name": task["name"],
            "actions": [(work, [task])],
            "task_dep": [f"work:{d}" for d in task.get("deps", [])],
            "uptodate": [config_changed(str(SPEC.get("version", 1)))],
            "meta": {"resources": task.get("resources", {})},
            "verbosity": 0,
        }
