"""Small measuring helpers the benchmarks share: percentiles, per-process CPU time, counters
from Prometheus metrics, and a speed check of the machine. (Reports: :mod:`load_tests.report`.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank, 0-100) of ``values``; NaN when there are none.

    >>> percentile([3.0, 1.0, 2.0, 4.0], 50), percentile([3.0, 1.0], 100), percentile([], 99)
    (3.0, 3.0, nan)
    """
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def cpu_seconds_from_stat(stat: str) -> float:
    """User + system CPU seconds from the text of a Linux ``/proc/<pid>/stat``.

    >>> ticks = os.sysconf("SC_CLK_TCK")
    >>> cpu_seconds_from_stat(f"7 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 {ticks} {ticks} 0") == 2
    True
    """
    fields = _fields_after_name(stat)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fields_after_name(stat: str) -> list[str]:
    """The fields of a ``/proc/<pid>/stat`` after the process name (which may hold spaces
    and parentheses): state, parent pid, ..."""
    return stat[stat.rindex(")") + 2:].split()


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a local process (Linux); raises ``OSError`` elsewhere."""
    return cpu_seconds_from_stat(Path(f"/proc/{pid}/stat").read_text())


def spawned_children(parents: list[int]) -> list[int]:
    """Processes that Python's multiprocessing spawned from ``parents`` (Linux ``/proc``):
    the workers' recommender processes, so a benchmark can count their CPU too."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = _fields_after_name(stat.read_text())
            if int(fields[1]) in parents and b"spawn_main" in (
                    stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):  # gone meanwhile, or not a process
            continue
    return found


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds of local processes (Linux /proc); None for none or elsewhere."""
    if not pids:
        return None
    try:
        return sum(process_cpu_seconds(pid) for pid in pids)
    except (OSError, ValueError, IndexError):
        return None


def cpu_share(before: float | None, after: float | None, wall_s: float) -> float | None:
    """CPU seconds per second of wall time (a share of one core) between two readings.

    >>> cpu_share(10.0, 15.0, 10.0), cpu_share(None, 15.0, 10.0)
    (0.5, None)
    """
    return None if before is None or after is None else (after - before) / wall_s


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process on the machine: pid -> (command line, seconds)."""
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        found[int(entry.name)] = (cmdline or stat[stat.index("(") + 1:stat.rindex(")")],
                                  cpu_seconds_from_stat(stat))
    return found


def process_roles(groups: dict[str, int], client_pids: dict[str, int]) -> dict[int, str]:
    """pid -> role, for the process groups a benchmark started (``groups``: name -> process
    group id) with all their children (uvicorn's workers), and the ``client_pids``."""
    roles = {pid: name for name, pid in client_pids.items()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        pgrp = int(_fields_after_name(stat)[2])
        for name, group in groups.items():
            if pgrp == group:
                roles[int(entry.name)] = name
    return roles


def metric_total(metrics_text: str, sample: str) -> float:
    """The sum of every ``sample`` (all label values) in a Prometheus text exposition.

    >>> metric_total('x_total{topic="a"} 3\\nx_total{topic="b"} 4\\ny 9\\n', "x_total")
    7.0
    """
    return float(sum(found.value for family in text_string_to_metric_families(metrics_text)
                     for found in family.samples if found.name == sample))


def speed_check_ms(iterations: int = 2_000_000) -> float:
    """Milliseconds of one core for a fixed pure-Python workload, run now.

    These machines are shared and their speed swings by half within an hour; a report that
    gives this before and after its runs says which kind of hour its figures come from.
    (About 170 ms on this project's machine when it is quiet.)
    """
    started = time.process_time()
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return (time.process_time() - started) * 1000
