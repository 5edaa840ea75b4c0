"""Delayed labels are resolved in event time, by activity and by the watermark only."""

from __future__ import annotations

import time

import pytest

from online_models.delayed_labels import ChurnLabeler, WindowLabeler

DAY = 86_400_000


def profile(orders: int = 1) -> dict[str, int]:
    return {"orders": orders, "first_seen_at": 0, "last_seen_at": 0}


def test_activity_before_deadline_resolves_label_zero_at_once_when_released_early() -> None:
    """Verify that activity before the deadline resolves the older snapshot as 0 immediately."""
    labeler = ChurnLabeler(horizon_ms=30 * DAY, release_at_deadline=False)
    assert labeler.observe_activity("c", profile(1), 0) == []
    resolved = labeler.observe_activity("c", profile(2), 10 * DAY)
    assert [(s.taken_at_ms, s.label, s.resolved_at_ms) for s in resolved] == [(0, 0.0, 10 * DAY)]


def test_label_zero_known_early_is_released_with_its_deadline_by_default() -> None:
    """Verify that by default an early 0 label waits for its deadline (no censored sample)."""
    labeler = ChurnLabeler(horizon_ms=30 * DAY)
    labeler.observe_activity("c", profile(1), 0)
    assert labeler.observe_activity("c", profile(2), 10 * DAY) == []
    assert labeler.advance_watermark(30 * DAY - 1) == []
    resolved = labeler.advance_watermark(30 * DAY)
    assert [(s.taken_at_ms, s.label) for s in resolved] == [(0, 0.0)]


def test_watermark_past_deadline_without_activity_resolves_label_one() -> None:
    """Verify that the watermark passing the deadline with no activity labels the snapshot 1."""
    labeler = ChurnLabeler(horizon_ms=30 * DAY)
    labeler.observe_activity("c", profile(), 5 * DAY)
    assert labeler.advance_watermark(35 * DAY - 1) == []
    resolved = labeler.advance_watermark(35 * DAY)
    assert [(s.customer_id, s.label, s.resolved_at_ms) for s in resolved] == [("c", 1.0, 35 * DAY)]
    assert labeler.n_pending == 0


def test_wall_clock_passing_resolves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verify that no label resolves because wall-clock time passes, only by event time."""
    labeler = ChurnLabeler(horizon_ms=30 * DAY)
    labeler.observe_activity("c", profile(), 0)
    far_future = time.time() + 10 * 365 * 86_400
    monkeypatch.setattr(time, "time", lambda: far_future)
    monkeypatch.setattr(time, "monotonic", lambda: far_future)
    assert labeler.advance_watermark(DAY) == []
    assert labeler.n_pending == 1


def test_watermark_is_monotone() -> None:
    """Verify that an older watermark changes nothing."""
    labeler = ChurnLabeler(horizon_ms=30 * DAY)
    labeler.observe_activity("c", profile(), 0)
    assert labeler.advance_watermark(40 * DAY) != []
    labeler.observe_activity("d", profile(), 41 * DAY)
    assert labeler.advance_watermark(10 * DAY) == []
    assert labeler.watermark_ms == 40 * DAY


def test_late_activity_after_deadline_resolves_expired_snapshot_as_churned() -> None:
    """Verify that activity after an unresolved deadline (lagging watermark) still gives 1."""
    labeler = ChurnLabeler(horizon_ms=30 * DAY)
    labeler.observe_activity("c", profile(1), 0)
    resolved = labeler.observe_activity("c", profile(2), 45 * DAY)
    assert [(s.label, s.resolved_at_ms) for s in resolved] == [(1.0, 30 * DAY)]


def test_activity_in_the_same_visit_replaces_the_snapshot() -> None:
    """Verify that activity within merge_within_ms replaces the snapshot instead of labelling it."""
    labeler = ChurnLabeler(horizon_ms=30 * DAY, merge_within_ms=DAY)
    labeler.observe_activity("c", profile(1), 0)
    assert labeler.observe_activity("c", profile(2), 60_000) == []
    resolved = labeler.advance_watermark(31 * DAY)
    assert [(s.taken_at_ms, s.profile["orders"], s.label) for s in resolved] == [(60_000, 2, 1.0)]


def test_review_snapshots_are_taken_during_silence_at_event_time() -> None:
    """Verify that silence produces review snapshots at the review times, up to the max age."""
    labeler = ChurnLabeler(horizon_ms=10 * DAY, review_every_ms=7 * DAY, max_review_age_ms=14 * DAY)
    labeler.observe_activity("c", profile(), 0)
    resolved = labeler.advance_watermark(100 * DAY)
    assert [(s.kind, s.taken_at_ms // DAY, s.label) for s in resolved] == [
        ("activity", 0, 1.0),
        ("review", 7, 1.0),
        ("review", 14, 1.0),
    ]


def test_forget_erases_pending_and_held_snapshots() -> None:
    """Verify that erasing a customer drops all their snapshots."""
    labeler = ChurnLabeler(horizon_ms=30 * DAY)
    labeler.observe_activity("c", profile(1), 0)
    labeler.observe_activity("c", profile(2), 5 * DAY)  # first one held back with label 0
    labeler.forget("c")
    assert labeler.advance_watermark(100 * DAY) == []


def test_window_labels_sum_purchases_inside_the_window_only() -> None:
    """Verify that a window label counts purchases in [taken_at, deadline) and nothing after."""
    labeler = WindowLabeler(horizon_ms=90 * DAY)
    resolved = labeler.observe_activity("c", profile(1), 0)
    resolved += labeler.observe_activity("c", profile(2), 30 * DAY, purchases=1, spend=20.0)
    resolved += labeler.observe_activity("c", profile(3), 89 * DAY, purchases=1, spend=5.0)
    resolved += labeler.observe_activity("c", profile(4), 95 * DAY, purchases=1, spend=100.0)
    resolved += labeler.advance_watermark(200 * DAY)
    first = next(s for s in resolved if s.taken_at_ms == 0)
    assert (first.label, first.spend, first.resolved_at_ms) == (2.0, 25.0, 90 * DAY)
    assert len(resolved) == 4
