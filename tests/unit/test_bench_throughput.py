"""The throughput benchmark's reading of a py-spy profile."""

from __future__ import annotations

from pathlib import Path

from load_tests.profiling import top_functions


def test_top_functions_counts_own_and_inclusive_time_per_function(tmp_path: Path) -> None:
    """Verify that each function's own samples (innermost frame) and inclusive samples (any
    frame of the stack, once per stack) are shares of all samples, threads left out."""
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "process 1:crm;thread (1): MainThread;run (agents/app.py:10);"
        "process_batch (/x/agents/batch.py:80);apply (/x/feature_store/store.py:9) 6\n"
        "process 1:crm;thread (1): MainThread;run (agents/app.py:10);"
        "process_batch (/x/agents/batch.py:80) 2\n"
        "process 1:crm;thread (2): Thread-2;poll (/y/selectors.py:3) 2\n")
    rows = {name: (own, inclusive) for name, own, inclusive in top_functions(raw)}
    assert rows["apply (feature_store/store.py)"] == (0.6, 0.6)
    assert rows["process_batch (agents/batch.py)"] == (0.2, 0.8)
    assert rows["poll (y/selectors.py)"] == (0.2, 0.2)
