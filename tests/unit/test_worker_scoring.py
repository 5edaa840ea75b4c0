"""The scorer keeps the recommender off the alerts' path, and loses none of its work."""

from __future__ import annotations

import orjson
import pytest

from agents.scoring import ModelScorer
from feature_store import FeatureStore
from feature_store.keys import CustomerKeys
from online_models import ChurnModel, ModelBundle
from schemas.events import ClickEvent
from tests.unit.test_alert_support import click


@pytest.fixture
def scorer(store: FeatureStore) -> ModelScorer:
    return ModelScorer(redis=store.redis, bundle=ModelBundle(churn=ChurnModel()))


async def score(store: FeatureStore, scorer: ModelScorer, events: list[ClickEvent]) -> None:
    applied = await store.apply_events(events)
    await scorer.on_batch([(event, result.profile_id, 0, result.outcome == "ok")
                           for event, result in zip(events, applied, strict=True)], None)


async def refresh(store: FeatureStore, scorer: ModelScorer) -> None:
    """What the worker does once the batch's alerts are out: the lists go with its progress."""
    write = scorer.refresh_recommendations()
    async with store.redis.pipeline(transaction=False) as pipe:
        write(pipe)
        await pipe.execute()


async def recommendations(store: FeatureStore, customer: str) -> list[dict[str, object]] | None:
    raw = await store.redis.get(CustomerKeys("default", customer).recos)
    return None if raw is None else orjson.loads(raw)


async def test_interactions_are_learnt_and_lists_written_after_the_batch_is_scored(
        store: FeatureStore, scorer: ModelScorer) -> None:
    recommender = scorer.bundle.recommender
    views = [click(f"v{i}", "c1", i, kind="product_view", product=f"p-{i % 3}")
             for i in range(4)]
    await score(store, scorer, views)
    assert recommender.example_count == 0, "scoring must not wait on the recommender"
    assert await recommendations(store, "c1") is None
    await refresh(store, scorer)
    assert recommender.example_count == 4
    listed = await recommendations(store, "c1")
    assert listed is not None and all({"product_id", "score", "source"} <= set(item)
                                      for item in listed)


async def test_an_erased_customer_leaves_nothing_for_the_recommender(
        store: FeatureStore, scorer: ModelScorer) -> None:
    await score(store, scorer, [click("v1", "c1", 0, kind="product_view"),
                                click("v2", "c2", 0, kind="product_view")])
    await scorer.forget("default", "c1")
    await refresh(store, scorer)
    assert "c1" not in scorer.bundle.recommender.mf.u_biases
    assert await recommendations(store, "c1") is None
    assert await recommendations(store, "c2") is not None


async def test_only_product_interactions_refresh_a_customers_list(store: FeatureStore) -> None:
    scorer = ModelScorer(redis=store.redis, bundle=ModelBundle(churn=ChurnModel()),
                         recommendation_refresh_s=0)
    await score(store, scorer, [click("v1", "c1", 0, kind="product_view")])
    await refresh(store, scorer)
    await store.redis.delete(CustomerKeys("default", "c1").recos)
    await score(store, scorer, [click("pv", "c1", 1, kind="page_view", product=None)])
    await refresh(store, scorer)
    assert await recommendations(store, "c1") is None, "a page view changes nothing shown"
    await score(store, scorer, [click("v2", "c1", 2, kind="product_view", product="p-2")])
    await refresh(store, scorer)
    assert await recommendations(store, "c1") is not None


async def test_under_load_lists_are_spread_over_later_calls_first_due_first(
        store: FeatureStore) -> None:
    scorer = ModelScorer(redis=store.redis, bundle=ModelBundle(churn=ChurnModel()),
                         lists_per_call=2)
    await score(store, scorer, [click(f"v{c}", f"c{c}", c, kind="product_view")
                                for c in range(5)])
    await refresh(store, scorer)
    assert [await recommendations(store, f"c{c}") is not None for c in range(5)] == [
        True, True, False, False, False]
    assert scorer.lists_due == 3
    await refresh(store, scorer)
    await refresh(store, scorer)
    assert scorer.lists_due == 0
    assert all([await recommendations(store, f"c{c}") is not None for c in range(5)])
