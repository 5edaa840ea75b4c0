"""Quiet customers are re-scored at the watermark, so their churn risk does not freeze."""

from __future__ import annotations

import pytest

from agents.rescoring import SilenceSweep
from feature_store import FeatureStore, ProfileReader
from feature_store.keys import ranking_key
from feature_store.model_inputs import load_model_inputs
from online_models import ChurnModel
from schemas.events import validate_event

DAY_MS = 86_400_000


def purchase(n: int, customer: str, day: int) -> dict[str, object]:
    return {"event_id": f"e{n}", "customer_id": customer, "type": "purchase",
            "order_id": f"o{n}", "items": [{"product_id": "p1", "quantity": 1,
                                             "unit_price": 20.0}], "total": 20.0,
            "currency": "EUR", "occurred_at": f"2025-01-{day:02d}T12:00:00Z"}


def trained_churn_model() -> ChurnModel:
    """A model that has seen quiet customers churn and busy ones come back."""
    model = ChurnModel(horizon_days=10)
    start = 1_735_689_600_000  # 2025-01-01
    for step in range(60):
        at = start + step * DAY_MS
        profile = {"orders": 1, "revenue": 20.0, "first_seen_at": start, "last_seen_at": at,
                   "last_order_at": at}
        model.observe_activity(f"busy-{step % 5}", profile, at)
        if step % 15 == 0:
            model.observe_activity(f"quiet-{step}", profile, at)
        model.advance_watermark(at)
    assert model.example_count > 0
    return model


async def test_a_quiet_customer_is_rescored_at_the_watermark(store: FeatureStore) -> None:
    """Verify that the sweep writes the model's churn probability at the watermark."""
    await store.apply_events([validate_event(purchase(1, "c1", 2)),
                              validate_event(purchase(2, "c2", 20))])
    model = trained_churn_model()
    sweep = SilenceSweep(redis=store.redis, churn=model, chunk=1)
    now_ms = 1_735_689_600_000 + 60 * DAY_MS
    assert await sweep.tick("default", now_ms) == 1  # c1 first: the oldest activity
    assert await sweep.tick("default", now_ms) == 1  # then c2
    inputs = await load_model_inputs(store.redis, [("default", "c1"), ("default", "c2")])
    reader = ProfileReader(redis=store.redis)
    for customer in ("c1", "c2"):
        expected, _ = model.predict(model.featurize(inputs[("default", customer)].profile,
                                                    now_ms))
        profile = await reader.profile("default", customer)
        assert profile is not None and profile.scores.churn_probability is not None
        assert profile.scores.churn_probability == pytest.approx(expected, abs=1e-6)
        assert profile.churn_explanation
    ranked = await reader.ranked("default", "churn", 10)
    assert {customer for customer, _ in ranked} == {"c1", "c2"}
    assert await store.redis.zscore(ranking_key("default", "churn"), "c1") == pytest.approx(
        (await reader.profile("default", "c1")).scores.churn_probability, abs=1e-6)


async def test_an_untrained_model_leaves_scores_alone(store: FeatureStore) -> None:
    """Verify that a model with no labelled examples does not overwrite any score."""
    await store.apply_events([validate_event(purchase(1, "c1", 2))])
    sweep = SilenceSweep(redis=store.redis, churn=ChurnModel())
    assert await sweep.tick("default", 1_800_000_000_000) == 0
    profile = await ProfileReader(redis=store.redis).profile("default", "c1")
    assert profile is not None and profile.scores.churn_probability is None
