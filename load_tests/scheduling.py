"""Real-time scheduling for benchmarks that share two cores with what they measure.

On this kind of machine the stack under test, the load generator and whatever else runs here
(other tenants, the workers' own background processes) all want the same cores; a benchmark
may run its side at real-time round-robin priority (``chrt --rr``) so that what it reports is
the stack's latency, not the queue for a core. Needs root or ``CAP_SYS_NICE``; priority 0 means
the default scheduler.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: How long each of the busy host's spinners holds a core at a time.
BUSY_SLICE_MS = 5


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


def busy_host_argv(share: float, cpu: int, priority: int,
                   slice_ms: int = BUSY_SLICE_MS) -> list[str]:
    """stress-ng spinning on ``cpu`` for ``share`` of its time, in ``slice_ms`` slices, at
    real-time round-robin ``priority``.

    >>> busy_host_argv(0.3, 1, 20)[:7]
    ['stress-ng', '--cpu', '1', '--taskset', '1', '--cpu-load', '30']
    """
    return ["stress-ng", "--cpu", "1", "--taskset", str(cpu), "--cpu-load",
            str(round(share * 100)), "--cpu-load-slice", str(slice_ms), "--sched", "rr",
            "--sched-prio", str(priority), "--quiet"]


def busy_host_problem(share: float, priority: int) -> str | None:
    """Why :func:`busy_host` cannot take ``share`` of each core at ``priority`` here, if it
    cannot: checked before a benchmark starts anything."""
    if not 0 < share < 1:
        return f"a busy host takes a share of each core above 0 and below 1, not {share:g}"
    if shutil.which("stress-ng") is None:
        return "emulating a busy host needs stress-ng: apt-get install stress-ng"
    if not realtime_permitted(priority):
        return (f"emulating a busy host needs real-time priority {priority} (root or "
                "CAP_SYS_NICE, and chrt from util-linux)")
    return None


@contextmanager
def busy_host(share: float, priority: int) -> Iterator[None]:
    """A slower host, emulated: on every core, a spinner at real-time ``priority`` (above the
    stack's) takes ``share`` of the core in short slices, as a busy hypervisor's other guests
    do. On this kind of machine some hours give the same work only about 70% of the CPU of
    others; this makes such an hour on demand, so the benchmark can show its headroom in
    any hour. Nothing is started for a ``share`` of 0."""
    if not share:
        yield
        return
    problem = busy_host_problem(share, priority)
    if problem is not None:
        raise SystemExit(problem)
    spinners = [subprocess.Popen(busy_host_argv(share, cpu, priority))
                for cpu in sorted(os.sched_getaffinity(0))]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.terminate()
        for spinner in spinners:
            spinner.wait(timeout=10)
