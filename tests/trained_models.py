"""Models that have already learnt a small shop, for tests that need served scores at once.

A fresh worker serves no churn probability and no segment until it has learnt enough (see
``online_models.scoring``); a test of the dashboard or the API that needs them starts the
worker from a checkpoint of these models, as a worker restarted in production would.
"""

from __future__ import annotations

import random

from agents.checkpoints import CheckpointStore
from online_models import ModelBundle, behaviour_vector
from stream.settings import Settings

DAY_MS = 86_400_000
START_MS = 1_735_689_600_000  # 2025-01-01


def trained_bundle(*, customers: int = 300, days: int = 120, seed: int = 5) -> ModelBundle:
    """Churn and CLV ready, segments of tenant ``default`` fitted: frequent small baskets,
    rare big spenders and browsers, a third of whom stop half way."""
    rng = random.Random(seed)
    bundle = ModelBundle()
    kinds = [(0.5, 0.6, 20.0), (0.1, 0.6, 300.0), (0.4, 0.01, 0.0)]  # visits/day, buy, basket
    people = []
    for index in range(customers):
        visits, buy, basket = kinds[index % 3]
        stop = rng.randrange(days // 3, days) if rng.random() < 0.35 else days
        people.append((f"seed-{index}", visits * rng.uniform(0.7, 1.3), buy, basket, stop))
    profiles: dict[str, dict[str, float]] = {}
    for day in range(days):
        at = START_MS + day * DAY_MS
        for customer, visits, buy, basket, stop in people:
            if day >= stop or rng.random() > visits:
                continue
            profile = profiles.setdefault(customer, {"first_seen_at": at, "orders": 0,
                                                     "revenue": 0.0, "views": 0,
                                                     "active_days": 0})
            profile["active_days"] += 1
            profile["views"] += rng.randint(2, 12)
            profile["last_seen_at"] = at
            purchases, spend = 0, 0.0
            if rng.random() < buy:
                purchases, spend = 1, basket * rng.uniform(0.5, 1.5)
                profile["orders"] += 1
                profile["revenue"] += spend
                profile["last_order_at"] = at
            bundle.churn.observe_activity(customer, profile, at)
            bundle.clv.observe_activity(customer, profile, at, purchases=purchases, spend=spend)
            bundle.segments.learn("default", customer, behaviour_vector(profile))
        bundle.churn.advance_watermark(at)
        bundle.clv.advance_watermark(at)
    assert bundle.churn.ready and bundle.clv.ready, "the seed shop must warm the models up"
    return bundle


def save_checkpoint(settings: Settings, bundle: ModelBundle) -> None:
    """Checkpoint ``bundle`` where a worker of ``settings``' app restores from."""
    CheckpointStore(directory=settings.checkpoint_dir, app_id=settings.app_id,
                    worker_name="seed").save(bundle.to_bytes())
