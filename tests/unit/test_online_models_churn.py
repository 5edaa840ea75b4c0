"""The churn model: progressive validation on delayed labels and exact explanations."""

from __future__ import annotations

import math
import random

import pytest

from online_models.churn import ChurnModel
from online_models.features import DAY_MS


def buyer(orders: int, first: int, last: int) -> dict[str, float]:
    return {
        "orders": orders,
        "revenue": 30.0 * orders,
        "avg_order_value": 30.0,
        "first_seen_at": first,
        "last_seen_at": last,
        "last_order_at": last,
    }


def replay(model: ChurnModel, days: int = 200, seed: int = 0) -> None:
    """Loyal customers (ids ending -0/-1) buy every 5-15 days; the others buy once and vanish."""
    rng = random.Random(seed)
    state: dict[str, tuple[int, int, int]] = {}
    for day in range(days):
        at = day * DAY_MS
        model.advance_watermark(at)
        for i in range(5):
            cid = f"new-{day}-{i}"
            state[cid] = (0, at, at)  # everyone buys on arrival
        for cid, (orders, first, next_at) in list(state.items()):
            if next_at <= at:
                orders += 1
                model.observe_activity(cid, buyer(orders, first, at), at)
                loyal = cid.endswith(("-0", "-1"))
                gap = rng.randint(5, 15) if loyal else 10**6
                state[cid] = (orders, first, at + gap * DAY_MS)


def test_scores_each_example_before_learning_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verify that progressive validation scores a resolved example before learning it."""
    model = ChurnModel(horizon_days=30, review_every_days=None)
    calls: list[str] = []
    original_predict = model.model.predict_proba_one
    original_learn = model.model.learn_one
    monkeypatch.setattr(
        model.model, "predict_proba_one", lambda x: calls.append("score") or original_predict(x)
    )
    monkeypatch.setattr(
        model.model, "learn_one", lambda x, y: calls.append("learn") or original_learn(x, y)
    )
    model.observe_activity("c", buyer(1, 0, 0), 0)
    model.advance_watermark(31 * DAY_MS)
    assert calls == ["score", "learn"]
    # The untrained model scored 0.5: its log loss on that first example is exactly ln 2.
    assert model.log_loss.get() == pytest.approx(math.log(2))
    assert model.example_count == 1


def test_learns_to_rank_churners_above_loyal_buyers() -> None:
    """Verify that delayed labels teach the model, with online ROC-AUC and calibration kept."""
    model = ChurnModel(horizon_days=30)
    replay(model)
    metrics = model.metrics_dict()
    assert metrics["roc_auc"] > 0.8
    assert sum(row["count"] for row in metrics["calibration"]) == model.example_count
    now = 200 * DAY_MS
    silent, _ = model.predict(model.featurize(buyer(1, now - 60 * DAY_MS, now - 60 * DAY_MS), now))
    regular, _ = model.predict(
        model.featurize(buyer(12, now - 120 * DAY_MS, now - 2 * DAY_MS), now)
    )
    assert silent > regular


def test_explanation_contributions_sum_to_the_logit() -> None:
    """Verify that intercept + all contributions == logit(probability)."""
    model = ChurnModel(horizon_days=30)
    replay(model, days=120)
    now = 120 * DAY_MS
    probability, explanation = model.predict(
        model.featurize(buyer(3, now - 50 * DAY_MS, now - 20 * DAY_MS), now)
    )
    total = explanation.intercept + math.fsum(c.contribution for c in explanation.contributions)
    assert total == pytest.approx(math.log(probability / (1 - probability)), abs=1e-9)
    magnitudes = [abs(c.contribution) for c in explanation.contributions]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert [c.feature for c in explanation.as_records(3)] == [c.feature for c in explanation.top(3)]
    assert explanation.top(3)[0].contribution != 0.0


def test_predict_is_pure() -> None:
    """Verify that predicting changes neither the scaler nor the weights (no leakage)."""
    model = ChurnModel(horizon_days=30)
    replay(model, days=60)
    before = (
        dict(model.model["StandardScaler"].means),
        dict(model.model["LogisticRegression"].weights),
    )
    for orders in range(1, 50):
        model.predict(model.featurize(buyer(orders, 0, 59 * DAY_MS), 60 * DAY_MS))
    after = (
        dict(model.model["StandardScaler"].means),
        dict(model.model["LogisticRegression"].weights),
    )
    assert before == after


def test_model_version_moves_with_learning() -> None:
    """Verify that model_version changes as the model learns."""
    model = ChurnModel(horizon_days=30, review_every_days=None)
    before = model.model_version
    model.observe_activity("c", buyer(1, 0, 0), 0)
    model.advance_watermark(40 * DAY_MS)
    assert model.model_version != before == "churn-v1+0"
