"""``crm bench quality``: model quality through the real pipeline, on a simulated shop with
ground truth and on the CDNOW purchase history against BG/NBD. See :mod:`.runner`."""

from __future__ import annotations

from load_tests.quality.runner import RESULTS_DIR, run_quality_benchmark

__all__ = ["RESULTS_DIR", "run_quality_benchmark"]
