"""Small helpers shared by the tests."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from stream.processes import ManagedProcess
from stream.settings import Settings

T = TypeVar("T")


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``CRM_*`` environment that reproduces ``settings`` in a child process."""
    return settings.to_env()


def worker_process(*, name: str, env: dict[str, str], log_path: Path) -> ManagedProcess:
    return ManagedProcess(name=name, argv=[sys.executable, "-m", "crm", "worker"],
                          log_path=log_path, env=env)


def wait_for(condition: Callable[[], T], *, timeout: float, what: str,
             interval: float = 0.2, alive: Sequence[ManagedProcess] = ()) -> T:
    """Poll ``condition`` until it returns something truthy; fail saying ``what`` never came.

    Fails at once, with the log's tail, if one of the ``alive`` processes has died.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        for process in alive:
            if not process.is_running():
                raise AssertionError(f"{process.name} died while waiting for {what}:\n"
                                     f"{process.log_tail(40)}")
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
