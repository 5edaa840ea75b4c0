"""Small measuring helpers the benchmarks share: percentiles, per-process CPU time, a speed
check of the machine, and writing a report."""

from __future__ import annotations

import os
import time
from pathlib import Path


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


def speed_check_line(before_ms: float, after_ms: float) -> str:
    """The report's sentence about :func:`speed_check_ms` before and after the runs.

    >>> speed_check_line(171.4, 240.0).endswith("171 ms before the runs, 240 ms after.")
    True
    """
    return (f"Machine speed check (a fixed pure-Python loop on one core; lower is faster, about "
            f"170 ms when this machine is quiet): {before_ms:.0f} ms before the runs, "
            f"{after_ms:.0f} ms after.")


def write_report(path: Path, report: str) -> None:
    """Write a benchmark's markdown report (making its folder) and print it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report)
    print(report)
