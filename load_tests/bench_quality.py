"""Benchmark: served model quality through the real pipeline, on shop families with planted
truth, our simulated shop and CDNOW; exits 1 when served and self-reported quality disagree.

Run ``python -m load_tests.bench_quality [--quick]`` (``make bench-quality``); writes
``load_tests/results/QUALITY.md`` and its plots. See :mod:`load_tests.quality`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from load_tests.quality import RESULTS_DIR, run_quality_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small shops and a CDNOW sample (a few minutes)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR,
                        help=f"where QUALITY.md and its plots go (default {RESULTS_DIR})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    report, disagreeing = run_quality_benchmark(output_dir=args.output_dir, quick=args.quick,
                                                progress=True)
    print(f"wrote {report}")
    if disagreeing:
        print("served and self-reported quality disagree: " + "; ".join(disagreeing),
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
