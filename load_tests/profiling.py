"""Reading a py-spy profile of a worker: its top functions by own and inclusive time."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

TOP_FUNCTIONS = 15


def py_spy_path() -> str:
    """py-spy beside this interpreter (the bench extra installs it), else on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"


def top_functions(raw: Path, limit: int = TOP_FUNCTIONS) -> list[tuple[str, float, float]]:
    """(function, own share, inclusive share) of py-spy's collapsed stacks, by own time."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        frames = [frame for frame in frames if frame]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return []
    return [(frame, samples / total, inclusive[frame] / total)
            for frame, samples in own.most_common(limit)]


def _short(frame: str) -> str:
    """``function (path/to/module.py:line)`` as ``function (module.py)``; threads dropped."""
    if frame.startswith(("process ", "thread ")):
        return ""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})"
