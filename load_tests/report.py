"""The benchmarks' report writer: the run sentence, markdown tables, the speed check, plots.

Every benchmark writes one markdown report under ``load_tests/results/`` (and prints it):
a title, a sentence saying when and on what it ran, tables, the machine's speed before and
after the runs where the figures depend on the hour, and the command that reproduces it.

>>> lines = [*title("Worker throughput"), run_sentence(datetime(2026, 3, 1, tzinfo=UTC)) + ".",
...          "", *table(["stage", "events/s"], [["consume only", "1,000"]], align="lr"), "",
...          reproduce_line("python -m load_tests.bench_pipeline")]
>>> print("\\n".join(lines))  # doctest: +ELLIPSIS
# Worker throughput
<BLANKLINE>
Run 2026-03-01 00:00 UTC on ..., ... CPUs, Python 3...
<BLANKLINE>
| stage | events/s |
|---|---:|
| consume only | 1,000 |
<BLANKLINE>
Reproduce: `python -m load_tests.bench_pipeline`.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def title(text: str) -> list[str]:
    """A report's first lines: its ``#`` heading and a blank line."""
    return [f"# {text}", ""]


def run_sentence(now: datetime | None = None) -> str:
    """When and on what the benchmark ran (no full stop, so a sentence may go on)."""
    now = now or datetime.now(UTC)
    return (f"Run {now:%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}")


def table(header: Sequence[str], rows: Iterable[Sequence[object]], *, align: str) -> list[str]:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r``.

    >>> table(["pipeline", "µs"], [["lean", 3.8], ["redis-py", 6.1]], align="lr")[1:]
    ['|---|---:|', '| lean | 3.8 |', '| redis-py | 6.1 |']
    """
    if len(align) != len(header):
        raise ValueError(f"{len(header)} columns but alignment {align!r}")
    rule = "|".join("---:" if side == "r" else "---" for side in align)
    lines = [f"| {' | '.join(header)} |", f"|{rule}|"]
    lines += [f"| {' | '.join(str(cell) for cell in row)} |" for row in rows]
    return lines


def speed_check_line(before_ms: float, after_ms: float) -> str:
    """The sentence about :func:`load_tests.measure.speed_check_ms` before and after the runs.

    >>> speed_check_line(171.4, 240.0).endswith("171 ms before the runs, 240 ms after.")
    True
    """
    return (f"Machine speed check (a fixed pure-Python loop on one core; lower is faster, about "
            f"170 ms when this machine is quiet): {before_ms:.0f} ms before the runs, "
            f"{after_ms:.0f} ms after.")


def reproduce_line(command: str, note: str = "") -> str:
    """The report's last line: the command that runs the benchmark again.

    >>> reproduce_line("make bench-api", " (the defaults)")
    'Reproduce: `make bench-api` (the defaults).'
    """
    return f"Reproduce: `{command}`{note}."


def image(alt: str, path: Path) -> str:
    """A plot saved beside the report, by its file name."""
    return f"![{alt}]({path.name})"


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (benchmarks run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_plot(figure: Any, path: Path) -> None:
    """Save a figure beside the report and free it."""
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot().close(figure)


def write_report(path: Path, text: str) -> None:
    """Write a benchmark's markdown report (making its folder) and print it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
