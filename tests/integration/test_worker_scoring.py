"""The models step keeps the recommender off the alerts' path, and loses none of its work."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest

from agents.alert_rules import CustomerUpdate
from agents.models import ModelEvent, ModelStep
from agents.recommending import RecommendationWork, apply_work
from feature_store import CartSweep, Commit, FeatureStore
from feature_store.keys import CustomerKeys
from online_models import ChurnModel, ModelBundle, Recommender
from schemas.events import AnyEvent
from tests.unit.support import click, purchase, ticket


@pytest.fixture
def scorer() -> ModelStep:
    return ModelStep(bundle=ModelBundle(churn=ChurnModel()))


async def score(store: FeatureStore, scorer: ModelStep,
                events: Sequence[AnyEvent]) -> list[CustomerUpdate]:
    """What a batch does: apply the events, the models step, commit the scores."""
    applied = await store.apply(list(events), started={}, carts=CartSweep())
    judged = [ModelEvent(event, (event.tenant, result.profile_id), 0, result.outcome == "ok")
              for event, result in zip(events, applied.events, strict=True)]
    scored = scorer.learn_and_score(judged, applied.customers, applied.clv_rankings, None)
    await store.commit(Commit(scores=scored.records))
    return scored.updates


async def refresh(store: FeatureStore, scorer: ModelStep) -> None:
    """What the worker does once the batch's alerts are out: the lists go with its commit."""
    await store.commit(Commit(recommendation_lists=scorer.lists_in_worker()))


async def recommendations(store: FeatureStore, customer: str) -> list[dict[str, object]] | None:
    raw = await store.redis.get(CustomerKeys("default", customer).recos)
    return None if raw is None else orjson.loads(raw)


async def test_interactions_are_learnt_and_lists_written_after_the_batch_is_scored(
        store: FeatureStore, scorer: ModelStep) -> None:
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
        store: FeatureStore, scorer: ModelStep) -> None:
    await score(store, scorer, [click("v1", "c1", 0, kind="product_view"),
                                click("v2", "c2", 0, kind="product_view")])
    scorer.forget("default", "c1")
    await refresh(store, scorer)
    assert "c1" not in scorer.bundle.recommender.mf.u_biases
    assert await recommendations(store, "c1") is None
    assert await recommendations(store, "c2") is not None


async def test_only_product_interactions_refresh_a_customers_list(store: FeatureStore) -> None:
    scorer = ModelStep(bundle=ModelBundle(churn=ChurnModel()),
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
    scorer = ModelStep(bundle=ModelBundle(churn=ChurnModel()),
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


async def test_the_recommenders_work_is_handed_over_whole_and_in_event_order(
        store: FeatureStore, scorer: ModelStep) -> None:
    """What the worker sends its recommender process after a batch: every new interaction
    in event order (a purchase with what the list excluded before it), every list due."""
    await score(store, scorer, [click("v1", "c1", 0, kind="product_view", product="p-1"),
                                click("v2", "c2", 1, kind="add_to_cart", product="p-2"),
                                purchase("o1", "c1", 2)])
    work = scorer.take_recommendation_work()
    assert [(i.customer_id, i.products, i.kind) for i in work.interactions] == [
        ("c1", ("p-1",), "view"), ("c2", ("p-2",), "cart"), ("c1", ("p-1",), "purchase")]
    assert work.interactions[-1].exclude == set()
    assert list(work.due) == [("default", "c1"), ("default", "c2")]
    assert scorer.lists_due == 0 and not scorer.take_recommendation_work()

    recommender = Recommender()
    lists = apply_work(recommender, RecommendationWork(
        interactions=work.interactions, due=work.due, erased=[("default", "c1")]))
    assert recommender.example_count == 3
    assert list(lists) == [("default", "c2")], "no list for the erased"
    assert "c1" not in recommender.mf.u_biases and "c2" in recommender.mf.u_biases


async def test_a_redelivered_ticket_is_judged_on_its_own_text_again(
        store: FeatureStore, scorer: ModelStep) -> None:
    """Verify that after a crash a redelivered kind ticket carries its own (positive)
    sentiment, not the customer's, which by then includes a later angry ticket; and that the
    duplicate does not move the customer's sentiment a second time."""
    kind = ticket("t1", "eve", 0).model_copy(
        update={"subject": "Question about sizes", "body": "Thank you, great service"})
    angry = ticket("t2", "eve", 5, status="resolved", csat=1).model_copy(
        update={"subject": "", "body": ""})
    first = await score(store, scorer, [kind, angry])
    own = {u.event.event_id: u.scores["sentiment"] for u in first}
    assert own["t1"] > 0 > own["t2"]
    stored = await store.redis.hget(CustomerKeys("default", "eve").profile, "sentiment")

    redelivered = await score(store, scorer, [kind])  # the feature store says: duplicate
    assert redelivered[0].scores["sentiment"] == pytest.approx(own["t1"], abs=0.05)
    assert await store.redis.hget(CustomerKeys("default", "eve").profile,
                                  "sentiment") == stored
