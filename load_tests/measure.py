"""Small measuring helpers the benchmarks share: percentiles and per-process CPU time."""

from __future__ import annotations

import os
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
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a local process (Linux); raises ``OSError`` elsewhere."""
    return cpu_seconds_from_stat(Path(f"/proc/{pid}/stat").read_text())
