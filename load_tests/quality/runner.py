"""``crm bench quality``: every shop through the real pipeline, then QUALITY.md and its plots."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from load_tests.quality.cdnow import CdnowConfig, run_cdnow
from load_tests.quality.families import FAMILIES
from load_tests.quality.family_run import FamilyConfig, FamilyResult, run_family, run_shop
from load_tests.quality.report import failures, summary_rows, write_report
from load_tests.quality.simulated import simulated_shop
from load_tests.quality.stack import LocalStack

log = logging.getLogger(__name__)

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"

#: Our own simulator, run like a family: 1,500 customers over 120 days.
SIMULATED = FamilyConfig("simulated", customers=1500, days=120.0, seed=11, partitions=3)


def run_quality_benchmark(*, output_dir: Path, quick: bool = False, progress: bool = True
                          ) -> tuple[Path, list[str]]:
    """Run CDNOW, every family and the simulated shop; write ``QUALITY.md`` and its plots.

    ``quick`` uses small shops and a CDNOW sample (the test suite's mode). Starts its own
    embedded broker and redis-server in a temporary folder and stops them. Returns the report's
    path and the measures on which served and self-reported quality disagree (each a failure).
    """
    started = time.monotonic()
    configs = [FamilyConfig(name) for name in FAMILIES]
    simulated = SIMULATED
    cdnow_config = CdnowConfig()
    if quick:
        configs = [config.quick() for config in configs]
        simulated = FamilyConfig("simulated", customers=300, days=90.0, seed=11, partitions=2)
        cdnow_config = CdnowConfig.quick()
    results: list[FamilyResult] = []
    with tempfile.TemporaryDirectory(prefix="crm-quality-") as work, \
            LocalStack(work_dir=Path(work)) as stack:
        log.info("CDNOW: replaying the calibration period through the worker")
        cdnow = run_cdnow(stack, cdnow_config, progress=progress)
        for config in configs:
            log.info("family %s: %d customers over %g days", config.family, config.customers,
                     config.days)
            results.append(run_family(stack, config, progress=progress))
        log.info("simulated shop: %d customers over %g days", simulated.customers,
                 simulated.days)
        shop = simulated_shop(customers=simulated.customers, days=simulated.days,
                              seed=simulated.seed)
        results.append(run_shop(stack, shop, simulated, progress=progress))
    report = write_report(output_dir, families=results, cdnow=cdnow,
                          elapsed_s=time.monotonic() - started, quick=quick)
    failed = [row.what for row in failures(summary_rows(results, cdnow, quick))]
    return report, failed
