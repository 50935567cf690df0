"""doit entry point of this checkout: lock, build and publish every collection.

    doit            re-lock what is stale, then build and publish everything
    doit lock       re-lock stale collections only
    doit list       every task;  doit info build:cpu:NAME-VERSION;  doit -n 2 for parallel builds
    doit verify     rebuild every package under other conditions and compare the wheels
    doit test_mode=1   keep going after failures; failed builds are replaced by the upstream
                       wheel of the same version where one exists (also AFFINEUR_TEST_MODE=1)

Every run writes build/reports/summary.md, summary.json and report.json.

The tasks themselves come from affineur.run; this file only points at the checkout.
"""

from pathlib import Path

from affineur.run import doit_tasks

TASKS = doit_tasks(Path(__file__).resolve().parent)

DOIT_CONFIG = TASKS.config(default_tasks=["lock", "build", "publish"])


def task_lock():
    """Lock each collection for each of its variants (only when its inputs changed)."""
    yield from TASKS.lock()


def task_download():
    """Fetch each locked sdist and check it against the lock's sha256."""
    yield from TASKS.download()


def task_build():
    """Build each locked package from source into build/cache/<build-key>/."""
    yield from TASKS.build()


def task_publish():
    """Publish dist/<collection>/<variant>/simple/ from the cache."""
    yield from TASKS.publish()


def task_verify():
    """Rebuild each package in a differently arranged environment; fail if its wheel differs."""
    yield from TASKS.verify()
