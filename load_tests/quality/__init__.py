"""``crm bench quality``: served model quality through the real pipeline, on shop families
with planted truth, our simulated shop and the CDNOW purchase history. See :mod:`.runner`."""

from __future__ import annotations

from load_tests.quality.runner import RESULTS_DIR, run_quality_benchmark

__all__ = ["RESULTS_DIR", "run_quality_benchmark"]
