"""Real-time scheduling for benchmarks that share two cores with what they measure.

On this kind of machine the stack under test, the load generator and whatever else runs here
(other tenants, the workers' own background processes) all want the same cores; a benchmark
may run its side at real-time round-robin priority (``chrt --rr``) so that what it reports is
the stack's latency, not the queue for a core. Needs root or ``CAP_SYS_NICE``; priority 0 means
the default scheduler.
"""

from __future__ import annotations

import os
import subprocess
import sys


def realtime_argv(priority: int) -> list[str]:
    """The prefix that starts a command at real-time round-robin ``priority`` (none for 0)."""
    return ["chrt", "--rr", str(priority)] if priority else []


def realtime_permitted(priority: int) -> bool:
    """Whether this process may start commands at ``priority`` (root or ``CAP_SYS_NICE``)."""
    if not priority:
        return True
    try:
        return subprocess.run([*realtime_argv(priority), "true"],
                              capture_output=True).returncode == 0
    except OSError:  # no chrt (util-linux)
        return False


def permitted_priority(priority: int) -> int:
    """``priority`` if this process may use it, else 0 (default scheduling), saying why."""
    if realtime_permitted(priority):
        return priority
    print(f"real-time priority {priority} is not permitted here (needs root or CAP_SYS_NICE, "
          "and chrt from util-linux): default scheduling for all", file=sys.stderr)
    return 0


def set_realtime(pid: int, priority: int) -> None:
    """Every thread of the running ``pid`` to real-time round-robin ``priority``."""
    subprocess.run(["chrt", "--all-tasks", "--rr", "--pid", str(priority), str(pid)],
                   check=True, capture_output=True)


def become_realtime(priority: int) -> None:
    """This thread to real-time round-robin ``priority``: every thread and process it starts
    afterwards inherits it (0 leaves the default scheduler)."""
    if priority:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(priority))
