"""The worker's code stays small enough to read: each step of the batch in a module of its
own size (issue 23 asks for none over 400 lines in agents/). The Redis boundary is an
import contract (``lint-imports``: agents has no Redis client)."""

from __future__ import annotations

from pathlib import Path

import agents

LONGEST_MODULE_LINES = 400


def test_no_module_of_the_worker_is_over_400_lines() -> None:
    """Verify that every module of agents/ has at most 400 lines."""
    package = Path(agents.__file__).parent
    lengths = {path.name: len(path.read_text().splitlines())
               for path in sorted(package.glob("*.py"))}
    assert len(lengths) > 10
    too_long = {name: lines for name, lines in lengths.items() if lines > LONGEST_MODULE_LINES}
    assert not too_long, f"split these modules: {too_long}"
