"""Drift detection: a planted change in a model's behaviour is found within a bounded number
of events; a stationary stream of the same length raises nothing."""

from __future__ import annotations

import math
import pickle
import random

from river import linear_model, preprocessing

from online_models.drift import DriftMonitor

EVENTS = 4000
CHANGE_AT = 2000
#: Events after the change within which it must be found. ADWIN checks every 32 errors
#: (its ``clock``): the flipped churn labels are found 15 errors after the flip, the jump in
#: absolute error after 47-111 (seeds 0-11).
MAX_DELAY = 300


def churn_log_losses(seed: int, flip_at: int | None) -> list[float]:
    """Log loss of a churn-like logistic regression on each example, scored before it is
    learnt; from ``flip_at`` on, the labels flip (customers who used to stay now leave)."""
    rng = random.Random(seed)
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    losses = []
    for i in range(EVENTS):
        x = {"recency": rng.gauss(0, 1), "frequency": rng.gauss(0, 1), "tickets": rng.gauss(0, 1)}
        churned = 1.5 * x["recency"] - x["frequency"] + 0.5 * x["tickets"] + rng.gauss(0, 0.5) > 0
        if flip_at is not None and i >= flip_at:
            churned = not churned
        p = min(max(model.predict_proba_one(x).get(True, 0.5), 1e-6), 1 - 1e-6)
        losses.append(-math.log(p if churned else 1.0 - p))
        model.learn_one(x, churned)
    return losses


def detections(errors: list[float]) -> list[int]:
    monitor = DriftMonitor()
    return [i for i, error in enumerate(errors)
            if monitor.update("churn", error, at_ms=i * 60_000) is not None]


def test_flipped_churn_labels_are_detected_within_bounded_events() -> None:
    """Verify that a churn model whose labels flip mid-stream is flagged soon after the flip,
    and not before it."""
    found = detections(churn_log_losses(seed=3, flip_at=CHANGE_AT))
    assert found, "the flip was not detected"
    assert found[0] >= CHANGE_AT, f"false alarm at event {found[0]}"
    assert found[0] - CHANGE_AT <= MAX_DELAY


def test_stationary_churn_stream_raises_nothing() -> None:
    """Verify that the same model on the same length of unchanged data raises no drift."""
    assert detections(churn_log_losses(seed=3, flip_at=None)) == []


def test_a_jump_in_mean_absolute_error_is_detected_and_reported() -> None:
    """Verify detection of a jump in a continuous error stream (a forecast's scaled error),
    the event's before/after means and ``drifted_at``, and quiet on the stationary twin."""
    rng = random.Random(11)
    monitor, quiet = DriftMonitor(), DriftMonitor()
    events = []
    for i in range(EVENTS):
        level = 0.6 if i < CHANGE_AT else 1.0
        error = abs(rng.gauss(0, level))
        event = monitor.update("forecast", error, at_ms=i)
        if event is not None:
            events.append(event)
        assert quiet.update("forecast", abs(rng.gauss(0, 0.6)), at_ms=i) is None
    assert events and CHANGE_AT <= events[0].at_ms <= CHANGE_AT + MAX_DELAY
    first = events[0]
    assert first.error_before < first.error_after
    assert abs(first.error_before - 0.6 * math.sqrt(2 / math.pi)) < 0.05
    assert monitor.drifted_at("forecast") == events[-1].at_ms
    assert quiet.drifted_at("forecast") is None
    assert "forecast error rose from" in first.reason


def test_falling_error_is_not_a_drift() -> None:
    """Verify that a model getting better (a warm-up) moves ADWIN's window but is no drift."""
    rng = random.Random(5)
    monitor = DriftMonitor()
    for i in range(EVENTS):
        rate = 0.4 if i < CHANGE_AT else 0.1
        assert monitor.update("sentiment", float(rng.random() < rate), at_ms=i) is None
    assert monitor.models["sentiment"].detector.width < EVENTS  # the old errors were dropped
    assert monitor.drifted_at("sentiment") is None


def test_monitor_pickles_and_stays_small() -> None:
    """Verify that a monitor restores to the same state and stays a few KB after many errors."""
    rng = random.Random(2)
    monitor = DriftMonitor()
    for i in range(50_000):
        monitor.update("clv", rng.random(), at_ms=i)
    data = pickle.dumps(monitor)
    assert len(data) < 10_000
    restored = pickle.loads(data)
    assert restored.metrics_dict() == monitor.metrics_dict()
    for i in range(1000):
        error = rng.random() + (1.0 if i > 500 else 0.0)
        assert restored.update("clv", error, i) == monitor.update("clv", error, i)
