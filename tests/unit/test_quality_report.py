"""The quality benchmark's pieces that need no services: events, scoring, the report."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pandas as pd
import pytest

from load_tests.quality.cdnow import (
    CALIBRATION_END_MS,
    CdnowConfig,
    CdnowResult,
    purchase_event,
    score,
)
from load_tests.quality.report import calibration_bins, summary_rows, write_report
from load_tests.quality.simulated import SimulatedConfig, SimulatedResult
from schemas.events import PurchaseEvent, validate_event


def test_cdnow_transaction_becomes_a_valid_purchase_event_at_noon() -> None:
    """Verify that a CDNOW row is a purchase the codec accepts, with a matching total."""
    row = pd.Series({"customer_id": "01234", "date": pd.Timestamp("1997-09-30"),
                     "number_of_cds": 7, "dollar_value": 101.03, "transaction": 5})
    event = validate_event(purchase_event(row))
    assert isinstance(event, PurchaseEvent)
    assert event.customer_id == "01234" and event.total == pytest.approx(101.03)
    assert event.items_bought == 7
    assert event.occurred_at_ms == CALIBRATION_END_MS - 12 * 3_600_000


def test_cdnow_zero_value_transaction_is_valid() -> None:
    """Verify that a $0 transaction (CDNOW has some) still passes validation."""
    row = pd.Series({"customer_id": "1", "date": pd.Timestamp("1997-01-01"),
                     "number_of_cds": 1, "dollar_value": 0.0, "transaction": 0})
    assert validate_event(purchase_event(row)).total == 0.0


def _cdnow_result(n: int = 400) -> CdnowResult:
    rng = random.Random(3)
    no_purchase = [int(rng.random() < 0.6) for _ in range(n)]
    spend = [0.0 if y else rng.uniform(5, 300) for y in no_purchase]
    return CdnowResult(
        config=CdnowConfig(sample=n), customers=n, calibration_events=2 * n,
        seconds_processing=1.0, no_purchase=no_purchase, holdout_spend=spend,
        ours_churn=[0.5 * y + 0.5 * rng.random() for y in no_purchase],
        bgnbd_expected=[rng.random() * (1 - y) for y in no_purchase],
        recency_days=[rng.uniform(0, 270) for _ in no_purchase],
        ours_clv=[s * rng.uniform(0.5, 1.5) for s in spend],
        ours_clv_live=[s for s in spend],
        bgnbd_gg_clv=[rng.uniform(0, 100) for _ in spend],
    )


def _sim_result(n: int = 300) -> SimulatedResult:
    rng = random.Random(4)
    latent = [rng.randrange(5) for _ in range(n)]
    churned = [int(rng.random() < 0.4) for _ in range(n)]
    return SimulatedResult(
        config=SimulatedConfig.quick(), events=10_000, customers_scored=n,
        seconds_producing=1.0, seconds_processing=2.0, now_ms=0, ari_live=0.5, ari_final=0.6,
        ari_batch_kmeans=0.7,
        latent_segments=latent, live_segments=[(s + 1) % 5 for s in latent],
        final_segments=latent, segment_labels={i: f"segment {i}" for i in range(5)},
        churned=churned, churn_scores=[0.3 * y + 0.7 * rng.random() for y in churned],
        churn_auc=0.7, churn_online={"examples": 10, "roc_auc": 0.8, "log_loss": 0.5},
        reco={"purchases_evaluated": 50, "hit_rate_at_10": 0.3,
              "popularity_hit_rate_at_10": 0.1},
        reco_in_order={"purchases_evaluated": 50, "hit_rate_at_10": 0.4,
                       "popularity_hit_rate_at_10": 0.1},
    )


def test_cdnow_scores_compare_ours_with_the_baselines() -> None:
    """Verify that the CDNOW metrics rank a perfect spend prediction first."""
    metrics = score(_cdnow_result())
    assert 0.5 < metrics["churn_auc"]["ours"] <= 1.0
    assert 0.5 < metrics["churn_auc"]["bgnbd"] <= 1.0
    assert metrics["clv_ours_live"] == {"mae": 0.0, "spearman": pytest.approx(1.0)}
    assert metrics["clv_ours"]["spearman"] > metrics["clv_bgnbd_gg"]["spearman"]


def test_calibration_bins_average_each_bin() -> None:
    """Verify that the calibration table is per equal-width bin, empty bins left out."""
    assert calibration_bins([0.05, 0.05, 0.95], [0, 1, 1], bins=10) == [
        (0.05, 0.5, 2), (0.95, 1.0, 1)]


def test_summary_marks_targets_met_and_missed() -> None:
    """Verify that each target is judged from the numbers (ARI 0.5 misses 0.8, 3x beats 2x)."""
    cdnow = _cdnow_result()
    cdnow.metrics = score(cdnow)
    assert len(summary_rows(_sim_result(), cdnow)) == 5
    sim_rows = summary_rows(_sim_result(), None)
    assert [row.met for row in sim_rows] == [False, False, True]
    assert sim_rows[2].result == pytest.approx(3.0)


def test_report_is_written_with_its_plots(tmp_path: Path) -> None:
    """Verify that QUALITY.md names every plot and every plot file exists and is a PNG."""
    cdnow = _cdnow_result()
    cdnow.metrics = score(cdnow)
    path = write_report(tmp_path, sim=_sim_result(), cdnow=cdnow, elapsed_s=61.0, quick=True)
    text = path.read_text()
    assert "## Summary" in text and "Quick mode" in text
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["quality_calibration.png", "quality_clv.png", "quality_hit_rate.png",
                    "quality_roc.png", "quality_segments.png"]
    for name in pngs:
        assert f"]({name})" in text
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not math.isnan(cdnow.metrics["clv_ours"]["mae"])
