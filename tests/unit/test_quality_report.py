"""The quality benchmark's pieces that need no services: events, scoring, the report."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from load_tests.quality.cdnow import (
    CALIBRATION_END_MS,
    CdnowConfig,
    CdnowResult,
    purchase_event,
    score,
    served_segments,
)
from load_tests.quality.families import generate_shop
from load_tests.quality.family_run import (
    FamilyConfig,
    FamilyResult,
    score_family,
    segments_ari_ceiling,
)
from load_tests.quality.report import failures, summary_rows, write_report
from load_tests.quality.served import ServedProfile
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
    churn = [0.5 * y + 0.5 * rng.random() for y in no_purchase]
    return CdnowResult(
        config=CdnowConfig(sample=n), customers=n, calibration_events=2 * n,
        seconds_processing=1.0, no_purchase=no_purchase, holdout_spend=spend,
        ours_churn=churn, ours_churn_live=list(churn), sweep_lag_s=3.0,
        bgnbd_expected=[rng.random() * (1 - y) for y in no_purchase],
        recency_days=[rng.uniform(0, 270) for _ in no_purchase],
        ours_clv=[s * rng.uniform(0.5, 1.5) for s in spend],
        ours_clv_live=[s for s in spend],
        bgnbd_gg_clv=[rng.uniform(0, 100) for _ in spend],
    )


def test_cdnow_scores_compare_ours_with_the_baselines() -> None:
    """Verify that the CDNOW metrics rank a perfect spend prediction first."""
    metrics = score(_cdnow_result())
    assert 0.5 < metrics["churn_auc"]["ours"] <= 1.0
    assert metrics["churn_auc"]["ours_live"] == metrics["churn_auc"]["ours"]
    assert 0.5 < metrics["churn_auc"]["bgnbd"] <= 1.0
    assert metrics["clv_ours_live"] == {"mae": 0.0, "spearman": pytest.approx(1.0)}
    assert metrics["clv_ours"]["spearman"] > metrics["clv_bgnbd_gg"]["spearman"]


SHOP = generate_shop("abrupt_stop", customers=80, days=90, seed=2,
                     start=datetime(2025, 1, 1, tzinfo=UTC))
CUTOFF = SHOP.end_ms - 30 * 86_400_000


def _served(customer: str, *, churn: float, segment: int) -> ServedProfile:
    return ServedProfile(customer_id=customer, churn_probability=churn, churn_status="ready",
                         clv=float(segment), segment=segment, segment_label=f"s{segment}",
                         scored_at_ms=SHOP.end_ms, last_seen_ms=None, sentiment=None)


def _family_result(*, progressive: float, own: float = 1.0) -> FamilyResult:
    """A family scored from served values that know the truth."""
    truth = SHOP.truth
    served = {c: _served(c, churn=0.9 if t.churned else 0.1, segment=t.group)
              for c, t in truth.items()}
    negative_openings = [e for e in SHOP.events if e["type"] == "ticket"
                         and e["status"] == "opened" and SHOP.ticket_truth[e["ticket_id"]] < 0]
    alerts = [{"kind": "negative_ticket", "triggered_by": e["event_id"]}
              for e in negative_openings]
    lists = {c: list(t.favourite_products)[:10] for c, t in truth.items()}
    models = {"churn": {"metrics": {"roc_auc": progressive}},
              "sentiment": {"metrics": {"accuracy": 0.95}}}
    result = score_family(SHOP, FamilyConfig("abrupt_stop"), cutoff=CUTOFF, at_a=CUTOFF,
                          snapshot_a=served, lists=lists, snapshot_b=served, models=models,
                          segments=[{"segment": 0, "label": "s0", "size": 10}],
                          alerts=alerts, sweep_lag_s=[1.0, 2.0])
    result.metrics["churn_auc_truth_own"] = own
    return result


def test_a_family_is_scored_from_what_was_served() -> None:
    """Verify each measure from served values that know the truth: perfect churn ranking,
    segments equal to the planted groups, every negative ticket alerted and no other."""
    metrics = _family_result(progressive=0.9).metrics
    assert metrics["churn_auc_truth"] == pytest.approx(1.0)
    assert metrics["segments_ari"] == pytest.approx(1.0)
    assert metrics["negative_ticket_recall"] == pytest.approx(1.0)
    assert metrics["negative_ticket_false_share"] == pytest.approx(0.0)
    assert metrics["sentiment_accuracy"] == pytest.approx(1.0)
    assert metrics["reco_favourite_category_share"] > 0.9
    assert metrics["churn_auc_progressive"] == pytest.approx(0.9)


def test_the_segment_ceiling_says_how_far_the_groups_can_be_told_apart() -> None:
    """Verify that groups which behave differently give a ceiling near 1 and groups which
    behave alike one near 0: the ceiling judges what the segmenter is given, not it."""
    rng = random.Random(3)
    day = 86_400_000

    def profile(orders: int, views: int) -> dict[str, object]:
        return {"active_days": 20, "orders": orders, "revenue": 30.0 * orders, "views": views,
                "cart_adds": orders + 2, "first_seen_at": 0, "last_seen_at": 60 * day}

    apart = {c: profile(2 + 12 * t.group + rng.randint(0, 2), 40 + 60 * t.group)
             for c, t in SHOP.truth.items()}
    alike = {c: profile(rng.randint(2, 30), rng.randint(40, 160)) for c in SHOP.truth}
    apart_ceiling, alike_ceiling = segments_ari_ceiling(SHOP, apart), segments_ari_ceiling(
        SHOP, alike)
    assert apart_ceiling is not None and apart_ceiling > 0.9
    assert alike_ceiling is not None and alike_ceiling < 0.2


def test_served_and_self_reported_quality_that_disagree_fail_the_report() -> None:
    """Verify that a served churn ROC-AUC more than 0.05 away from the model's own scores of
    the same customers at the same time is a failure (a stale score, a second code path),
    and a close one is not."""
    agreeing = _family_result(progressive=0.9, own=0.97)
    disagreeing = _family_result(progressive=0.9, own=0.8)
    assert failures(summary_rows([agreeing], None, quick=False)) == []
    [failed] = failures(summary_rows([disagreeing], None, quick=False))
    assert "the model's own scores" in failed.what


def test_report_is_written_with_a_plot_per_shop(tmp_path: Path) -> None:
    """Verify that QUALITY.md names a plot per family and CDNOW's, each a PNG on disk."""
    cdnow = _cdnow_result()
    cdnow.metrics = score(cdnow)
    path = write_report(tmp_path, families=[_family_result(progressive=0.9)], cdnow=cdnow,
                        elapsed_s=61.0, quick=True)
    text = path.read_text()
    assert "## Summary" in text and "Quick mode" in text and "## abrupt_stop" in text
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["quality_abrupt_stop.png", "quality_cdnow.png"]
    for name in pngs:
        assert f"]({name})" in text
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_served_segment_labels_are_counted_and_told_apart(tmp_path: Path) -> None:
    """Verify that the report counts the served segments and separates their labels so a
    label with a comma in it ("big spenders, rare") reads as one segment."""
    cdnow = _cdnow_result()
    cdnow.metrics = score(cdnow)
    family = _family_result(progressive=0.9)
    family.segment_labels = {0: "big spenders, rare", 1: "browsers"}
    text = write_report(tmp_path, families=[family], cdnow=cdnow, elapsed_s=61.0,
                        quick=True).read_text()
    assert "Served segments (2): big spenders, rare; browsers." in text


def test_cdnow_segments_are_shown_with_what_their_customers_did_in_the_holdout(
        tmp_path: Path) -> None:
    """Verify that each segment served on CDNOW is listed with its customers, the share who
    bought on one day only, and the share who bought again and what they spent in the
    holdout, the segment that spent most first."""
    cdnow = _cdnow_result(n=6)
    cdnow.no_purchase, cdnow.holdout_spend = [1, 1, 0, 0, 1, 0], [0, 0, 50, 30, 0, 200]
    cdnow.segment_labels = ["rare buyers", "rare buyers", "rare buyers", "regular buyers",
                            "regular buyers", "big spenders, rare"]
    cdnow.calibration_days = [1, 1, 3, 1, 2, 4]
    cdnow.metrics = score(cdnow)
    rows = served_segments(cdnow)
    assert [(row.label, row.customers) for row in rows] == [
        ("big spenders, rare", 1), ("rare buyers", 3), ("regular buyers", 2)]
    rare = rows[1]
    assert (rare.one_day, rare.bought_again, rare.holdout_spend) == pytest.approx(
        (2 / 3, 1 / 3, 50 / 3))
    text = write_report(tmp_path, families=[_family_result(progressive=0.9)], cdnow=cdnow,
                        elapsed_s=61.0, quick=True).read_text()
    assert "| regular buyers | 2 | 50% | 50% | 15.00 |" in text
