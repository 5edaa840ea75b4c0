"""Quiet customers are re-scored at the watermark, so their churn risk does not freeze."""

from __future__ import annotations

import asyncio

import pytest

from agents.alert_config import AlertConfig, ChurnRiskRule
from agents.models import ModelEvent, ModelStep
from agents.publishing import AlertPublisher
from agents.rescoring import SilenceSweep
from agents.rules import AlertRules
from feature_store import CartSweep, Commit, FeatureStore, ProfileReader
from feature_store.customers import load_customers
from feature_store.keys import (
    ALERTS_STREAM_KEY,
    alert_state_key,
    ranking_key,
    scoring_index_key,
    segment_members_key,
)
from feature_store.rule_state import CustomerAlertState
from online_models import ChurnModel, ModelBundle, model_statuses, score_customer
from schemas.events import validate_event
from schemas.profile import CustomerProfile
from schemas.records import AlertKind
from stream.settings import Settings
from tests import trained_models
from tests.unit.support import FakeAlertProducer

DAY_MS = 86_400_000
START = 1_735_689_600_000  # 2025-01-01


def purchase(n: int, customer: str, day: int) -> dict[str, object]:
    return {"event_id": f"e{n}", "customer_id": customer, "type": "purchase",
            "order_id": f"o{n}", "items": [{"product_id": "p1", "quantity": 1,
                                             "unit_price": 20.0}], "total": 20.0,
            "currency": "EUR", "occurred_at": f"2025-01-{day:02d}T12:00:00Z"}


def trained_bundle() -> ModelBundle:
    """Churn learnt from quiet customers who churn and busy ones who come back."""
    model = ChurnModel(horizon_days=10, min_examples=20, min_examples_per_class=5)
    for step in range(60):
        at = START + step * DAY_MS
        profile = {"orders": 1, "revenue": 20.0, "active_days": step + 1,
                   "first_seen_at": START, "last_seen_at": at, "last_order_at": at}
        model.observe_activity(f"busy-{step % 5}", profile, at)
        if step % 15 == 0:
            model.observe_activity(f"quiet-{step}", {**profile, "active_days": 1,
                                                     "first_seen_at": at}, at)
        model.advance_watermark(at)
    assert model.ready
    return ModelBundle(churn=model)


async def apply_and_score(store: FeatureStore, bundle: ModelBundle,
                          events: list[dict[str, object]], partition: int) -> None:
    """What a worker's batch does: apply the events, score the customers, commit."""
    validated = [validate_event(event) for event in events]
    applied = await store.apply(validated, started={}, carts=CartSweep())
    batch = [ModelEvent(event, (event.tenant, result.profile_id), partition)
             for event, result in zip(validated, applied.events, strict=True)]
    scored = ModelStep(bundle=bundle).learn_and_score(batch, applied.customers,
                                                      applied.clv_rankings, None)
    await store.commit(Commit(scores=scored.records))


async def served_as_scored(store: FeatureStore, bundle: ModelBundle, customers: list[str],
                           at_ms: int) -> dict[str, CustomerProfile]:
    """The customers' served profiles, once checked to hold what score_customer gives from
    their stored features at ``at_ms``."""
    inputs = await load_customers(store.redis, [("default", c) for c in customers])
    reader = ProfileReader(redis=store.redis)
    statuses = model_statuses(bundle)
    profiles = {}
    for customer in customers:
        expected = score_customer(bundle, "default", inputs[("default", customer)].profile,
                                  at_ms, statuses)
        profile = await reader.profile("default", customer)
        assert profile is not None and profile.scores.churn_probability is not None
        assert profile.scores.churn_probability == pytest.approx(expected.churn_probability,
                                                                 abs=1e-6)
        assert [c.feature for c in profile.churn_explanation] == [
            c.feature for c in expected.churn_explanation]
        profiles[customer] = profile
    return profiles


async def test_a_quiet_customer_is_rescored_at_the_watermark_by_the_function_of_the_batch(
        store: FeatureStore) -> None:
    """Verify that the sweep writes what score_customer gives at the watermark, for the
    customers of the partitions it is given, oldest score first."""
    bundle = trained_bundle()
    await apply_and_score(store, bundle, [purchase(1, "c1", 2), purchase(2, "c2", 20)],
                          partition=0)
    await apply_and_score(store, bundle, [purchase(3, "c3", 3)], partition=1)
    sweep = SilenceSweep(store=store, bundle=bundle, smallest_chunk=1)
    now_ms = START + 60 * DAY_MS
    assert await sweep.tick([0], now_ms) == 1  # c1 first: scored longest ago
    assert await sweep.tick([0], now_ms) == 1  # then c2
    assert await sweep.tick([0], now_ms) == 0  # nothing left before the watermark
    served = await served_as_scored(store, bundle, ["c1", "c2"], now_ms)
    for customer, profile in served.items():
        assert profile.scores.scored_at is not None
        assert int(profile.scores.scored_at.timestamp() * 1000) == now_ms
        assert await store.redis.zscore(ranking_key("default", "churn"), customer) == \
            pytest.approx(profile.scores.churn_probability, abs=1e-6)
    assert await store.redis.zscore(scoring_index_key("default", 1), "c3") < now_ms, \
        "partition 1 is another worker's"


async def test_a_warming_up_model_serves_no_probability_and_says_why(
        store: FeatureStore) -> None:
    """Verify that before enough labels a score is null with a warming_up status, and the
    customer is not in the at-risk ranking."""
    bundle = ModelBundle()
    await apply_and_score(store, bundle, [purchase(1, "c1", 2)], partition=0)
    sweep = SilenceSweep(store=store, bundle=bundle)
    assert await sweep.tick([0], START + 90 * DAY_MS) == 1
    profile = await ProfileReader(redis=store.redis).profile("default", "c1")
    assert profile is not None and profile.scores.churn_probability is None
    assert profile.scores.churn_status is not None
    assert profile.scores.churn_status.status == "warming_up"
    assert profile.scores.churn_status.needed == bundle.churn.min_examples
    assert profile.scores.clv is None and profile.scores.clv_status is not None
    assert await store.redis.zcard(ranking_key("default", "churn")) == 0


async def test_a_tick_waits_for_the_batch_that_has_its_customers_in_hand(
        store: FeatureStore) -> None:
    """Verify that a tick reads nothing while a batch holds the scores lock: it would read
    the customers as they were before the batch and write that over the batch's scores."""
    bundle = trained_bundle()
    await apply_and_score(store, bundle, [purchase(1, "c1", 2)], partition=0)
    lock = asyncio.Lock()
    sweep = SilenceSweep(store=store, bundle=bundle, lock=lock)
    async with lock:  # a batch between reading c1 and writing their scores
        tick = asyncio.create_task(sweep.tick([0], START + 60 * DAY_MS))
        await asyncio.sleep(0.2)
        assert not tick.done()
        assert await store.redis.zscore(scoring_index_key("default", 0), "c1") == \
            START + DAY_MS + 12 * 3_600_000, "not re-scored while the batch holds c1"
    assert await tick == 1


async def test_a_batch_waits_for_the_tick_that_has_its_customers_in_hand(
        store: FeatureStore) -> None:
    """Verify that a tick holds the scores lock from reading its customers to writing them,
    so a batch cannot read them in between."""
    bundle = trained_bundle()
    await apply_and_score(store, bundle, [purchase(1, "c1", 2)], partition=0)
    sweep = SilenceSweep(store=store, bundle=bundle)
    reading, resume = asyncio.Event(), asyncio.Event()
    original = store.due_for_rescoring

    async def slow_read(*args: object, **kwargs: object) -> object:
        reading.set()
        await resume.wait()
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    store.due_for_rescoring = slow_read  # type: ignore[method-assign, assignment]
    tick = asyncio.create_task(sweep.tick([0], START + 60 * DAY_MS))
    await reading.wait()
    assert sweep.lock.locked(), "a batch could read c1 while the tick has them in hand"
    resume.set()
    assert await tick == 1
    assert not sweep.lock.locked()


async def test_an_erased_customer_leaves_every_ranking_segment_and_index(
        store: FeatureStore) -> None:
    """Verify that after erasure nothing counts or lists the customer: no ranking, no
    segment's members, no scoring index."""
    bundle = trained_models.trained_bundle()
    await apply_and_score(store, bundle, [purchase(1, "c1", 2), purchase(2, "c1", 9)],
                          partition=0)
    profile = await ProfileReader(redis=store.redis).profile("default", "c1")
    assert profile is not None and profile.scores.segment is not None
    segment = profile.scores.segment
    assert await store.redis.sismember(segment_members_key("default", segment), "c1")
    await store.erase(tenant="default", customer_id="c1", block_seconds=60, receipt_id="r1")
    assert not await store.redis.sismember(segment_members_key("default", segment), "c1")
    assert await store.redis.zscore(scoring_index_key("default", 0), "c1") is None
    for score in ("churn", "clv"):
        assert await store.redis.zscore(ranking_key("default", score), "c1") is None


async def test_a_customer_who_goes_quiet_gets_one_churn_risk_alert(store: FeatureStore) -> None:
    """Verify that silence alone raises a churn_risk alert: the sweep's re-scores count
    towards the rule (two above the threshold here), the alert goes to crm.alerts and the
    feed once, its trigger is the silence since the last activity, and a crash before the
    rule state was saved repeats the same alert id rather than losing or changing it."""
    bundle = trained_bundle()
    await apply_and_score(store, bundle, [purchase(1, "c1", 2)], partition=0)
    producer = FakeAlertProducer()
    rules = AlertRules(config=AlertConfig(churn_risk=ChurnRiskRule(threshold=0.6,
                                                                   consecutive=2)),
                       clicks_topic="shop.clicks", purchases_topic="shop.purchases")
    alerts = AlertPublisher(settings=Settings(kafka_bootstrap="127.0.0.1:1"),
                            producer=producer)
    sweep = SilenceSweep(store=store, bundle=bundle, rules=rules, alerts=alerts)
    assert await sweep.tick([0], START + 4 * DAY_MS) == 1  # three days after: still fine
    assert producer.alerts() == []
    for days in (40, 41, 42, 43):
        await sweep.tick([0], START + days * DAY_MS)
    [alert] = producer.alerts()
    assert alert.kind is AlertKind.CHURN_RISK and alert.customer_id == "c1"
    assert alert.triggered_by.startswith("silence@") and alert.score >= 0.6
    assert "Churn risk" in alert.reason and alert.explanation
    assert await store.redis.xlen(ALERTS_STREAM_KEY) == 1
    await sweep.tick([0], START + 44 * DAY_MS)
    assert len(producer.alerts()) == 1, "one alert per silence"
    # A crash after publishing, before the state was saved: a new worker decides again and
    # publishes the same alert id.
    await store.redis.set(alert_state_key("default", "c1"), CustomerAlertState(
        churn_streak=1).to_json())
    restarted = FakeAlertProducer()
    sweep.alerts = AlertPublisher(settings=Settings(kafka_bootstrap="127.0.0.1:1"),
                                  producer=restarted)
    await sweep.tick([0], START + 45 * DAY_MS)
    assert [a.alert_id for a in restarted.alerts()] == [alert.alert_id]
    assert await store.redis.xlen(ALERTS_STREAM_KEY) == 1, "the feed takes each id once"


async def test_models_that_learn_at_a_standing_watermark_rescore_everyone_once(
        store: FeatureStore) -> None:
    """Verify that when the models learn and the watermark stands still (a replay that has
    ended), the sweep re-scores every customer once with the models as they now are, so the
    served scores are the models' current word and carry their version; the churn rule does
    not count these re-scores, since no more silence has passed."""
    bundle = trained_bundle()
    await apply_and_score(store, bundle, [purchase(1, "c1", 2), purchase(2, "c2", 5),
                                          purchase(3, "c3", 30)], partition=0)
    producer = FakeAlertProducer()
    rules = AlertRules(config=AlertConfig(churn_risk=ChurnRiskRule(threshold=0.2, hysteresis=0.1,
                                                                   consecutive=2)),
                       clicks_topic="shop.clicks", purchases_topic="shop.purchases")
    sweep = SilenceSweep(store=store, bundle=bundle, rules=rules, smallest_chunk=2,
                         alerts=AlertPublisher(settings=Settings(kafka_bootstrap="127.0.0.1:1"),
                                               producer=producer))
    watermark = START + 40 * DAY_MS
    while await sweep.tick([0], watermark):
        pass
    assert await sweep.tick([0], watermark) == 0, "the start's refresh found them current"
    before = {c: CustomerAlertState.from_json(await store.redis.get(alert_state_key(
        "default", c))) for c in ("c1", "c2", "c3")}

    for step in range(60, 90):  # the churn model learns more: customers who never return
        at = START + step * DAY_MS
        bundle.churn.observe_activity(f"gone-{step}", {
            "orders": 3, "revenue": 60.0, "active_days": 3, "first_seen_at": at - 9 * DAY_MS,
            "last_seen_at": at, "last_order_at": at}, at)
        bundle.churn.advance_watermark(at + 20 * DAY_MS)
    assert await sweep.tick([0], watermark) == 2, "a chunk of the index"
    assert await sweep.tick([0], watermark) == 1, "then the rest"
    assert await sweep.tick([0], watermark) == 0, "once"

    served = await served_as_scored(store, bundle, ["c1", "c2", "c3"], watermark)
    for customer, profile in served.items():
        assert profile.model_version == bundle.scores_version
        state = CustomerAlertState.from_json(await store.redis.get(alert_state_key(
            "default", customer)))
        assert (state.churn_streak, state.churn_armed) == (
            before[customer].churn_streak, before[customer].churn_armed)
    assert producer.alerts() == [], "the refresh passed no more silence to the rule"


async def test_a_refresh_leaves_alone_the_customers_the_current_models_scored(
        store: FeatureStore) -> None:
    """Verify that a refresh re-scores only customers whose stored scores carry an older
    version of the models: one a batch scored after the last lesson is left as it is."""
    bundle = trained_bundle()
    await apply_and_score(store, bundle, [purchase(1, "c1", 2), purchase(2, "c2", 5),
                                          purchase(3, "c3", 9)], partition=0)
    sweep = SilenceSweep(store=store, bundle=bundle, smallest_chunk=2)
    watermark = START + 40 * DAY_MS
    while await sweep.tick([0], watermark):
        pass
    assert await sweep.tick([0], watermark) == 0, "the start's refresh found them current"
    bundle.churn.observe_activity("gone", {"orders": 1, "revenue": 20.0, "active_days": 1,
                                           "first_seen_at": START, "last_seen_at": START,
                                           "last_order_at": START}, START)
    bundle.churn.advance_watermark(START + 40 * DAY_MS)
    later = {**purchase(4, "c1", 1), "occurred_at": "2025-02-15T12:00:00Z"}  # after it
    await apply_and_score(store, bundle, [later], partition=0)
    current = bundle.scores_version
    assert (await ProfileReader(redis=store.redis).profile("default", "c1")).model_version \
        == current
    written = [await sweep.tick([0], watermark) for _ in range(3)]
    assert written == [2, 0, 0], "c2 and c3, then c1 is found current and the pass ends"
    for customer in ("c1", "c2", "c3"):
        profile = await ProfileReader(redis=store.redis).profile("default", customer)
        assert profile is not None and profile.model_version == current


async def test_a_worker_starts_with_a_refresh_of_scores_its_models_did_not_make(
        store: FeatureStore) -> None:
    """Verify that a sweep made with models other than those that stored the scores (a
    worker restarted from an older checkpoint) re-scores them once with its own, at the
    standing watermark, before any lesson."""
    await apply_and_score(store, trained_bundle(), [purchase(1, "c1", 2)],
                          partition=0)
    watermark = START + 40 * DAY_MS
    older = trained_bundle()  # restored: it has lessons the other never had
    later = START + 90 * DAY_MS
    older.churn.observe_activity("gone", {"orders": 1, "revenue": 20.0, "active_days": 1,
                                          "first_seen_at": later, "last_seen_at": later,
                                          "last_order_at": later}, later)
    older.churn.advance_watermark(later + 30 * DAY_MS)
    first = SilenceSweep(store=store, bundle=trained_bundle())
    assert await first.tick([0], watermark) == 1  # at the watermark, by the first models
    restarted = SilenceSweep(store=store, bundle=older)
    assert await restarted.tick([0], watermark) == 1, "its own models' word"
    assert await restarted.tick([0], watermark) == 0
    [profile] = (await served_as_scored(store, older, ["c1"], watermark)).values()
    assert profile.model_version == older.scores_version != trained_bundle().scores_version
