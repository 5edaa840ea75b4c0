"""The alert rules through the batch on a real redis-server (scripted model scores, a fake
Kafka producer): rule state and cart timers in Redis across restarts, the feed once."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import orjson
import pytest

from agents.alert_config import AlertConfig, AlertConfigWatcher
from agents.batch import Worker, process_batch
from agents.publishing import ALERTS_REPEATED, AlertPublishError
from feature_store import FeatureStore
from feature_store.keys import (
    ALERTS_STREAM_KEY,
    SUPPRESSED_KEY,
    UNSENT_ALERTS_KEY,
    alert_state_key,
    cart_timers_key,
)
from feature_store.reads import SystemReader
from schemas.events import AnyEvent
from schemas.records import Alert, AlertKind
from schemas.topics import CLICKS, PURCHASES
from stream.settings import Settings
from tests.unit.support import (
    FakeAlertProducer,
    Messages,
    ScriptedModels,
    at,
    batch_worker,
    click,
    ms,
    purchase,
    ticket,
    triage_drift,
)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, kafka_bootstrap="127.0.0.1:1",
                    topic_prefix=f"u{uuid.uuid4().hex[:6]}.", partitions=3)


@pytest.fixture
def messages(settings: Settings) -> Messages:
    return Messages(settings)


def worker(store: FeatureStore, settings: Settings, scores: dict[str, dict] | None = None,
           producer: FakeAlertProducer | None = None,
           config: AlertConfig | AlertConfigWatcher | None = None) -> Worker:
    """A fresh worker, as after a restart: nothing but Redis carries over."""
    return batch_worker(store, settings, models=ScriptedModels(scores),
                        producer=producer or FakeAlertProducer(), config=config)


def sent(worker: Worker) -> list[Alert]:
    return worker.alerts._producer.alerts()  # type: ignore[attr-defined,no-any-return]


async def run(worker: Worker, messages: Messages, events: list[AnyEvent],
              partition: int = 0) -> list[Alert]:
    """One batch; the alerts it produced."""
    before = len(sent(worker))
    await process_batch(worker, messages(events, partition))
    return sent(worker)[before:]


async def test_rule_state_lives_in_redis_across_restarts(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that K consecutive counts and cooldowns hold across fresh workers."""
    churn = [click(f"e{i}", "c1", i * 60) for i in range(6)]
    scores = {f"e{i}": {"churn_probability": 0.8} for i in range(6)}
    scores |= {"d1": {"churn_probability": 0.1}}
    scores |= {f"f{i}": {"churn_probability": 0.9} for i in range(3)}
    assert await run(worker(store, settings, scores), messages, churn[:2]) == []
    [alert] = await run(worker(store, settings, scores), messages, churn[2:3])
    assert alert.kind is AlertKind.CHURN_RISK and alert.triggered_by == "e2"
    assert await store.redis.exists(alert_state_key("default", "c1"))
    again = [click("d1", "c1", 400), *[click(f"f{i}", "c1", 500 + i) for i in range(3)]]
    assert await run(worker(store, settings, scores), messages, again) == [], (
        "re-armed, but still within the 7-day cooldown set before the restart")


async def test_a_batch_repeated_after_a_crash_repeats_the_same_alerts(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that a batch whose commit never happened, processed again by a fresh worker,
    puts identical alerts on Kafka, counted as repeats, and on the feed once."""
    scores = {"t1": {"sentiment": -0.9, "urgency": 0.5},
              "p1": {"anomaly_score": 0.99, "anomaly_reason": "big"},
              "e1": {"segment": 3, "previous_segment": 1}}
    batch = messages([ticket("t1", "c1", 0), purchase("p1", "c2", 1, total=900.0),
                      click("e1", "c3", 2)])
    first = worker(store, settings, scores)
    real_commit = store.commit
    store.commit = _fail  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await process_batch(first, batch)
    store.commit = real_commit  # type: ignore[method-assign]
    assert {a.kind for a in sent(first)} == {
        AlertKind.NEGATIVE_TICKET, AlertKind.ANOMALOUS_PURCHASE, AlertKind.SEGMENT_CHANGE}
    repeated = ALERTS_REPEATED.labels(kind="negative_ticket")
    before = repeated._value.get()
    second = worker(store, settings, scores)
    await process_batch(second, batch)
    assert sent(second) == sent(first)  # same ids, same content, same emitted_at
    assert repeated._value.get() == before + 1
    feed = await SystemReader(redis=store.redis).alerts("default")
    assert sorted(a.alert_id for a in feed) == sorted(a.alert_id for a in sent(first))


async def test_a_worker_killed_before_the_broker_had_two_alerts_of_a_kind_repeats_both(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that two negative tickets of one customer in one batch, whose alerts the broker
    never took before the worker died (its rule state already saved in Redis), both go out
    from the restarted worker, the first too, though the second replaced it as the last
    alert of its kind; and the feed has both."""
    scores = {"t1": {"sentiment": -0.9}, "t2": {"sentiment": -0.9}}
    batch = messages([ticket("t1", "c1", 0), ticket("t2", "c1", 7 * 60)])  # cooldown 6 h
    first = worker(store, settings, scores, producer=FakeAlertProducer(failing=2))
    with pytest.raises(AlertPublishError):
        await process_batch(first, batch)
    second = worker(store, settings, scores)
    await process_batch(second, batch)
    assert [a.triggered_by for a in sent(second)] == ["t1", "t2"]
    assert sent(second) == sent(first)
    feed = await SystemReader(redis=store.redis).alerts("default")
    assert sorted(a.triggered_by for a in feed) == ["t1", "t2"]


async def test_a_drift_alert_a_killed_worker_left_unsent_goes_out_from_the_next_one(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that a model's drift alert whose publish failed before the worker died is
    kept in Redis, sent by the restarted worker's first batch, in the feed once, and then
    no longer kept."""
    first = batch_worker(store, settings, models=ScriptedModels(drifts=[triage_drift(0)]),
                         producer=FakeAlertProducer(failing=1))
    with pytest.raises(AlertPublishError):
        await process_batch(first, messages([click("e1", "c1", 0)]))
    [drift] = sent(first)
    assert drift.kind is AlertKind.MODEL_DRIFT
    assert (await store.carried_over()).unsent == [drift]
    restarted = worker(store, settings)
    assert await run(restarted, messages, [click("e2", "c1", 1)]) == [drift]
    assert await SystemReader(redis=store.redis).alerts("default") == [drift]
    assert not await store.redis.exists(UNSENT_ALERTS_KEY)
    assert await run(worker(store, settings), messages, [click("e3", "c1", 2)]) == []


async def test_the_drift_cooldown_is_taken_up_by_the_next_worker(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that a restarted worker whose model finds the same drift again within the
    cooldown (a day of event time) does not alert it twice: the first alert's time is in
    Redis with it. After the cooldown, the drift is alerted again."""
    hour, day = 3_600_000, 86_400_000
    found = []
    for step, at_ms in enumerate([0, hour, day + hour]):
        restarted = batch_worker(store, settings, producer=FakeAlertProducer(),
                                 models=ScriptedModels(drifts=[triage_drift(at_ms)]))
        await process_batch(restarted, messages([click(f"e{step}", "c1", step)]))
        found.append([alert.triggered_by for alert in sent(restarted)])
    assert found == [["triage@0"], [], [f"triage@{day + hour}"]]
    assert [alert.triggered_by for alert in await SystemReader(redis=store.redis).alerts(
        "default")] == [f"triage@{day + hour}", "triage@0"]
    assert (await store.carried_over()).drift_alerted_at == {"triage": day + hour}


async def _fail(*args: object, **kwargs: object) -> None:
    raise ConnectionError("Redis went away")


async def test_declined_consent_is_counted_in_redis(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that suppressed marketing alerts are counted per kind in Redis."""
    scores = {"e1": {"segment": 2, "previous_segment": 1},
              "e2": {"segment": 2, "previous_segment": 1}}
    alerts = await run(worker(store, settings, scores), messages,
                       [click("e1", "c1", 0, consent=False), click("e2", "c2", 0, consent=True)])
    assert [a.customer_id for a in alerts] == ["c2"]
    assert await store.redis.hgetall(SUPPRESSED_KEY) == {b"segment_change": b"1"}


async def test_published_alerts_reach_the_feed_keyed_by_customer_once(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that an alert goes to crm.alerts keyed by customer and into the feed once,
    with tenant and kind beside it."""
    producer = FakeAlertProducer()
    alerts = await run(worker(store, settings, {"t1": {"sentiment": -0.9}}, producer),
                       messages, [ticket("t1", "c1", 0)])
    assert [(t, k) for t, k, _ in producer.messages] == [(settings.topic("crm.alerts"), "c1")]
    assert await store.redis.xlen(ALERTS_STREAM_KEY) == 1
    [(_, fields)] = await store.redis.xrange(ALERTS_STREAM_KEY)
    assert (fields[b"tenant"], fields[b"kind"]) == (b"default", b"negative_ticket")
    assert await SystemReader(redis=store.redis).alerts("default") == alerts


async def test_a_batch_whose_alerts_the_broker_did_not_take_is_not_committed(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that an unsent alert fails the batch: no feed, no progress."""
    failing = worker(store, settings, {"t1": {"sentiment": -0.9}},
                     FakeAlertProducer(unsent=1))
    with pytest.raises(AlertPublishError):
        await run(failing, messages, [ticket("t1", "c1", 0)])
    assert await store.redis.xlen(ALERTS_STREAM_KEY) == 0
    assert (await store.positions([(settings.topic("support.tickets"), 0)]))[
        (settings.topic("support.tickets"), 0)].progress.done == -1


async def test_cart_timers_fire_by_watermark_and_survive_a_failed_publish(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that a cart opens a timer in Redis, fires once its partition's watermarks pass
    the deadline, fires again (same id) when its first publication failed, and is gone once
    its alert is committed."""
    clicks, purchases = settings.topic(CLICKS), settings.topic(PURCHASES)
    first = worker(store, settings)
    await run(first, messages, [click("a1", "c1", 0, kind="add_to_cart")], partition=1)
    member = orjson.dumps(["default", "c1", "a1"])
    assert await store.redis.zscore(cart_timers_key(clicks, 1), member) == ms(at(30))
    assert await run(first, messages, [click("k0", "k", 29), purchase("kp", "k", 29)],
                     partition=1) == []
    assert await run(first, messages, [click("o1", "o", 99), purchase("op", "o", 99)]) == [], (
        "another partition")
    broken = worker(store, settings, producer=FakeAlertProducer(unsent=1))
    with pytest.raises(AlertPublishError):
        await run(broken, messages, [click("k1", "k", 31), purchase("kp2", "k", 31)],
                  partition=1)
    restarted = worker(store, settings)
    [fired] = await run(restarted, messages, [click("k2", "k", 33), purchase("kp3", "k", 33)],
                        partition=1)
    assert fired.kind is AlertKind.CART_ABANDONMENT and fired.triggered_by == "a1"
    assert [a.alert_id for a in sent(broken)] == [fired.alert_id]
    assert await store.redis.zcard(cart_timers_key(clicks, 1)) == 0
    assert purchases != clicks
    assert await run(worker(store, settings), messages, [click("k3", "k", 99)],
                     partition=1) == []


async def test_a_cart_opened_with_an_alert_the_broker_did_not_take_still_fires(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that a cart opened in the batch of another alert of the customer, a batch the
    broker failed (its rule state saved, its commit never made), keeps its timer in Redis:
    the retry reads the cart back from the saved state, and the cart fires on time."""
    clicks = settings.topic(CLICKS)
    scores = {"t1": {"sentiment": -0.9}}
    batch = [ticket("t1", "c1", 0), click("a1", "c1", 1, kind="add_to_cart")]
    broken = worker(store, settings, scores, FakeAlertProducer(unsent=1))
    with pytest.raises(AlertPublishError):
        await run(broken, messages, batch)
    member = orjson.dumps(["default", "c1", "a1"])
    assert await store.redis.zscore(cart_timers_key(clicks, 0), member) == ms(at(31))
    retried = worker(store, settings, scores)
    await run(retried, messages, batch)
    [fired] = await run(retried, messages, [click("k1", "k", 40), purchase("kp", "k", 40)])
    assert (fired.kind, fired.triggered_by) == (AlertKind.CART_ABANDONMENT, "a1")


async def test_a_purchase_closes_the_cart_even_in_the_same_batch(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that no cart alert fires when the customer bought after the add-to-cart."""
    clicks = settings.topic(CLICKS)
    alerts_worker = worker(store, settings)
    await run(alerts_worker, messages, [click("a1", "c1", 0, kind="add_to_cart"),
                                        purchase("p1", "c1", 10)])
    assert await store.redis.zcard(cart_timers_key(clicks, 0)) == 0
    await run(alerts_worker, messages, [click("a2", "c1", 60, kind="add_to_cart")])
    await run(alerts_worker, messages, [purchase("p2", "c1", 70), click("k", "k", 200),
                                        purchase("kp", "k", 200)])
    assert sent(alerts_worker) == []
    assert await store.redis.zcard(cart_timers_key(clicks, 0)) == 0


async def test_carts_wait_for_the_purchases_watermark(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that a lagging purchases partition holds cart timers back (configurable)."""
    alerts_worker = worker(store, settings)
    await run(alerts_worker, messages, [click("a1", "c1", 0, kind="add_to_cart"),
                                        purchase("kp", "k", 20)])
    assert await run(alerts_worker, messages, [click("k1", "k", 90)]) == []
    [alert] = await run(alerts_worker, messages, [purchase("kp2", "k", 31)])
    assert alert.triggered_by == "a1"

    impatient = AlertConfig.model_validate({"cart_abandonment": {"wait_for_purchases": False}})
    other = worker(store, settings, config=impatient)
    await run(other, messages, [click("b1", "c2", 100, kind="add_to_cart")])
    assert [a.triggered_by for a in await run(other, messages, [click("k2", "k", 190)])] == [
        "b1"]


async def test_one_batch_fires_the_due_carts_of_all_its_partitions(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that each partition's carts fire by its own clicks watermark, held back by the
    purchases watermark of the same partition, in the batch or recorded in Redis."""
    alerts_worker = worker(store, settings)
    for customer, partition in (("c0", 0), ("c1", 1), ("c2", 2)):
        await run(alerts_worker, messages, [click(f"a-{customer}", customer, 0,
                                                  kind="add_to_cart")], partition)
    await run(alerts_worker, messages, [purchase("lag", "k", 10)], partition=2)
    await process_batch(alerts_worker, [
        *messages([click("k0", "k", 31), purchase("k0p", "k", 31)], 0),
        *messages([click("k1", "k", 90), purchase("k1p", "k", 29)], 1),
        *messages([click("k2", "k", 90)], 2)])
    assert [a.triggered_by for a in sent(alerts_worker)] == ["a-c0"]
    await process_batch(alerts_worker, [*messages([purchase("k1q", "k", 31)], 1),
                                        *messages([purchase("k2q", "k", 31)], 2)])
    assert sorted(a.triggered_by for a in sent(alerts_worker)) == ["a-c0", "a-c1", "a-c2"]


async def test_an_erased_customers_cart_is_dropped(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that a cart whose customer was erased fires nothing and loses its timer."""
    alerts_worker = worker(store, settings)
    await run(alerts_worker, messages, [click("a1", "gone", 0, kind="add_to_cart")])
    await store.erase(tenant="default", customer_id="gone", block_seconds=60, receipt_id="r")
    assert await run(alerts_worker, messages, [click("k", "k", 31),
                                               purchase("kp", "k", 31)]) == []
    assert await store.redis.zcard(cart_timers_key(settings.topic(CLICKS), 0)) == 0
    assert not await store.redis.exists(alert_state_key("default", "gone"))


async def test_anonymous_visitors_get_no_alerts(
        store: FeatureStore, settings: Settings, messages: Messages) -> None:
    """Verify that a visitor's profile (anon:...) never alerts: there is no one to contact."""
    visitor = ticket("t1", "c1", 0).model_copy(update={"customer_id": None,
                                                       "anonymous_id": "v1"})
    assert await run(worker(store, settings, {"t1": {"sentiment": -0.9}}), messages,
                     [visitor]) == []


async def test_the_rules_follow_the_config_file_named_in_the_settings(
        store: FeatureStore, settings: Settings, messages: Messages, tmp_path: Path) -> None:
    """Verify that CRM_ALERTS_CONFIG is read, and a change applies without a restart."""
    path = tmp_path / "alerts.yaml"
    path.write_text("reload_interval_s: 0.01\nnegative_ticket: {enabled: false}\n")
    scores = {"t1": {"sentiment": -0.9}, "t2": {"sentiment": -0.9}}
    alerts_worker = worker(store, settings, scores, config=AlertConfigWatcher(path))
    assert await run(alerts_worker, messages, [ticket("t1", "c1", 0)]) == []
    path.write_text("reload_interval_s: 0.01\nnegative_ticket: {enabled: true}\n")
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    await asyncio.sleep(0.02)
    [alert] = await run(alerts_worker, messages, [ticket("t2", "c1", 0)])
    assert alert.triggered_by == "t2"
