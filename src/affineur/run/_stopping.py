"""A stopped run stops its builds first.

doit's worker threads wait for their build processes, so a run stopped by a
signal would otherwise hang until every build finished on its own.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["builds_end_with_the_run"]

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


@contextlib.contextmanager
def builds_end_with_the_run() -> Iterator[None]:
    """On SIGTERM, SIGHUP or SIGINT, kill every running build first, then stop the run.

    doit's worker threads wait for their build processes, so without this a
    stopped run would hang until every build finished on its own. The run then
    unwinds (SIGINT as KeyboardInterrupt, the others as an exit with 128 + the
    signal), so the report of what did and did not run is still written. A run
    killed outright (SIGKILL) takes its builds along by the sandbox's
    parent-death signal instead.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        # A run that started no hook never loaded pep517, and a signal handler is no
        # place to start importing it.
        pep517 = sys.modules.get("affineur.pep517")
        if pep517 is not None:
            pep517.kill_running_hooks()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    previous = {signum: signal.signal(signum, stop) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
