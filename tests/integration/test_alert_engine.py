"""The alert engine on a real redis-server (fake Kafka producer): state, restarts, carts, feed."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from agents.alert_config import AlertConfig
from agents.alerting import (
    ALERTS_REPEATED,
    SUPPRESSED_KEY,
    AlertEngine,
    AlertPublishError,
    alert_state_key,
    cart_timers_key,
)
from feature_store.keys import ALERTS_STREAM_KEY, CustomerKeys, watermark_key
from feature_store.reads import SystemReader
from schemas.records import AlertKind
from schemas.topics import CLICKS, PURCHASES
from stream.settings import Settings
from tests.unit.support import FakeAlertProducer, at, click, ms, purchase, ticket, update


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, topic_prefix=f"u{uuid.uuid4().hex[:6]}.", partitions=3)


def engine(redis: aioredis.Redis, settings: Settings, config: AlertConfig | None = None,
           producer: FakeAlertProducer | None = None) -> AlertEngine:
    """A fresh engine, as after a worker restart: nothing but Redis carries over."""
    return AlertEngine(redis=redis, settings=settings, config=config or AlertConfig(),
                       producer=producer or FakeAlertProducer())


async def profile(redis: aioredis.Redis, customer: str, **fields: int) -> None:
    await redis.hset(CustomerKeys("default", customer).profile,
                     mapping={"customer_id": customer, **fields})


async def test_rule_state_lives_in_redis_across_restarts(redis: aioredis.Redis,
                                                         settings: Settings) -> None:
    """Verify that K consecutive counts and cooldowns hold across fresh engine instances."""
    churn = [update(click(f"e{i}", "c1", i * 60), churn_probability=0.8) for i in range(6)]
    assert await engine(redis, settings).evaluate(churn[:2]) == []
    [alert] = await engine(redis, settings).evaluate(churn[2:3])
    assert alert.kind is AlertKind.CHURN_RISK and alert.triggered_by == "e2"
    assert await redis.exists(alert_state_key("default", "c1"))
    dip = update(click("d1", "c1", 400), churn_probability=0.1)
    assert await engine(redis, settings).evaluate(
        [dip, *[update(click(f"f{i}", "c1", 500 + i), churn_probability=0.9) for i in range(3)]]
    ) == [], "re-armed, but still within the 7-day cooldown set before the restart"


async def test_a_crashed_batch_re_evaluated_by_a_fresh_engine_repeats_the_same_alerts(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """Verify that re-evaluating a batch whose state was saved re-emits identical alerts."""
    batch = [update(ticket("t1", "c1", 0), sentiment=-0.9, urgency=0.5),
             update(purchase("p1", "c2", 1, total=900.0), anomaly_score=0.99,
                    anomaly_reason="big"),
             update(click("e1", "c3", 2), segment=3, previous_segment=1)]
    first = await engine(redis, settings).evaluate(batch)
    assert {a.kind for a in first} == {AlertKind.NEGATIVE_TICKET, AlertKind.ANOMALOUS_PURCHASE,
                                       AlertKind.SEGMENT_CHANGE}
    again = await engine(redis, settings).evaluate(batch)
    assert again == first  # same ids, same content, same emitted_at


async def test_declined_consent_is_counted_in_redis(redis: aioredis.Redis,
                                                    settings: Settings) -> None:
    """Verify that suppressed marketing alerts are counted per kind in Redis."""
    updates = [update(click("e1", "c1", 0, consent=False), segment=2, previous_segment=1),
               update(click("e2", "c2", 0, consent=True), segment=2, previous_segment=1)]
    alerts = await engine(redis, settings).evaluate(updates)
    assert [a.customer_id for a in alerts] == ["c2"]
    assert await redis.hgetall(SUPPRESSED_KEY) == {b"segment_change": b"1"}


async def test_publish_produces_keyed_by_customer_and_feeds_the_api_once(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """Verify that publish produces to crm.alerts and appends each alert id once to the feed."""
    producer = FakeAlertProducer()
    alerts_engine = engine(redis, settings, producer=producer)
    alerts = await alerts_engine.evaluate([update(ticket("t1", "c1", 0), sentiment=-0.9)])
    await alerts_engine.publish(alerts)
    # A repeat after a crash (a fresh engine): Kafka again, the feed once.
    await engine(redis, settings, producer=producer).publish(alerts)
    assert [(t, k) for t, k, _ in producer.messages] == [(settings.topic("crm.alerts"), "c1")] * 2
    assert producer.alerts() == alerts * 2
    assert await redis.xlen(ALERTS_STREAM_KEY) == 1
    [(_, fields)] = await redis.xrange(ALERTS_STREAM_KEY)
    assert (fields[b"tenant"], fields[b"kind"]) == (b"default", b"negative_ticket")
    assert await SystemReader(redis=redis).alerts("default") == alerts


async def test_the_worker_feeds_the_api_in_a_round_trip_it_sends_anyway(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """Verify that publish_to_topic puts the alerts on Kafka and leaves the feed to the
    caller's pipeline (the worker's: the one recording the batch's progress), once per id."""
    producer = FakeAlertProducer()
    alerts_engine = engine(redis, settings, producer=producer)
    alerts = await alerts_engine.evaluate([update(ticket("t1", "c1", 0), sentiment=-0.9)])
    feed = await alerts_engine.publish_to_topic(alerts)
    assert producer.alerts() == alerts
    assert await redis.xlen(ALERTS_STREAM_KEY) == 0  # nothing sent to Redis yet
    for _ in range(2):  # the second time: the batch repeated after a crash
        async with redis.pipeline(transaction=False) as pipe:
            feed(pipe)
            pipe.set("progress", 1)
            await pipe.execute()
    assert await SystemReader(redis=redis).alerts("default") == alerts


async def test_a_batch_retried_in_the_same_process_feeds_but_does_not_produce_again(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """Verify that alerts the broker acknowledged are not produced again when their batch is
    retried (its progress round trip failed), are counted as repeats only when produced
    again after a crash, and still reach the feed once."""
    producer = FakeAlertProducer()
    alerts_engine = engine(redis, settings, producer=producer)
    batch = [update(ticket("t1", "c1", 0), sentiment=-0.9)]
    alerts = await alerts_engine.evaluate(batch)
    await alerts_engine.publish_to_topic(alerts)  # acknowledged; its feed never written
    repeated = ALERTS_REPEATED.labels(kind="negative_ticket")
    before = repeated._value.get()
    again = await alerts_engine.evaluate(batch)  # the retry: the trigger was seen
    assert again == alerts
    feed = await alerts_engine.publish_to_topic(again)
    assert producer.alerts() == alerts, "produced once"
    async with redis.pipeline(transaction=False) as pipe:
        feed(pipe)
        await pipe.execute()
    assert await SystemReader(redis=redis).alerts("default") == alerts
    assert repeated._value.get() == before
    after_crash = engine(redis, settings, producer=producer)
    await after_crash.publish_to_topic(await after_crash.evaluate(batch))
    assert producer.alerts() == alerts * 2 and repeated._value.get() == before + 1


async def test_publish_raises_when_the_broker_did_not_take_every_alert(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """Verify that an unsent alert fails the batch (so its progress is not recorded)."""
    producer = FakeAlertProducer(unsent=1)
    alerts_engine = engine(redis, settings, producer=producer)
    alerts = await alerts_engine.evaluate([update(ticket("t1", "c1", 0), sentiment=-0.9)])
    with pytest.raises(AlertPublishError):
        await alerts_engine.publish(alerts)
    assert await redis.xlen(ALERTS_STREAM_KEY) == 0


async def test_cart_timers_fire_by_watermark_and_survive_a_crash_before_publish(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """Verify that a due cart fires once the watermark passes, and again (same id) after a crash
    between firing and publishing, and is gone once published."""
    clicks = settings.topic(CLICKS)
    await profile(redis, "c1", cart_adds=1)
    first = engine(redis, settings)
    await first.evaluate([update(click("a1", "c1", 0, kind="add_to_cart"), partition=1)])
    assert await redis.zscore(cart_timers_key(clicks, 1), orjson.dumps(["default", "c1", "a1"])
                              ) == ms(at(30))
    assert await first.on_watermark(clicks, 1, ms(at(29))) == []
    assert await first.on_watermark(clicks, 0, ms(at(99))) == [], "another partition"
    [fired] = await first.on_watermark(clicks, 1, ms(at(31)))
    assert fired.kind is AlertKind.CART_ABANDONMENT and fired.triggered_by == "a1"
    assert await first.on_watermark(clicks, 1, ms(at(32))) == [], "pending in this worker"
    restarted = engine(redis, settings)  # the first one crashed before publishing
    assert await restarted.on_watermark(clicks, 1, ms(at(33))) == [fired]
    await restarted.publish([fired])
    assert await redis.zcard(cart_timers_key(clicks, 1)) == 0
    assert await engine(redis, settings).on_watermark(clicks, 1, ms(at(99))) == []


async def test_a_cart_fired_by_a_batch_that_failed_fires_again_in_its_retry(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """Verify that a cart fired in a batch whose publishing failed (a deadline, a broker
    error) is fired again by the batch's retry, then published and its timer removed."""
    clicks = settings.topic(CLICKS)
    await profile(redis, "c1", cart_adds=1)
    producer = FakeAlertProducer(unsent=1)
    alerts_engine = engine(redis, settings, producer=producer)
    await alerts_engine.evaluate([update(click("a1", "c1", 0, kind="add_to_cart"), partition=1)])
    [fired] = await alerts_engine.on_watermark(clicks, 1, ms(at(31)))
    with pytest.raises(AlertPublishError):
        await alerts_engine.publish([fired])
    alerts_engine.forget_unpublished()
    assert await alerts_engine.on_watermark(clicks, 1, ms(at(31))) == [fired]
    await alerts_engine.publish([fired])
    assert await redis.zcard(cart_timers_key(clicks, 1)) == 0


async def test_a_purchase_closes_the_cart_even_when_processed_first(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """Verify that no cart alert fires when the customer bought after the add-to-cart."""
    clicks = settings.topic(CLICKS)
    alerts_engine = engine(redis, settings)
    await profile(redis, "c1")
    await alerts_engine.evaluate([update(click("a1", "c1", 0, kind="add_to_cart")),
                                  update(purchase("p1", "c1", 10))])
    assert await redis.zcard(cart_timers_key(clicks, 0)) == 0
    # The purchase reached the profile, but its update was never evaluated (e.g. lost race):
    await alerts_engine.evaluate([update(click("a2", "c1", 60, kind="add_to_cart"))])
    await profile(redis, "c2", last_order_at=ms(at(70)))
    await redis.hset(CustomerKeys("default", "c1").profile, "last_order_at", ms(at(70)))
    assert await alerts_engine.on_watermark(clicks, 0, ms(at(200))) == []
    assert await redis.zcard(cart_timers_key(clicks, 0)) == 0


async def test_carts_wait_for_the_purchases_watermark(redis: aioredis.Redis,
                                                      settings: Settings) -> None:
    """Verify that a lagging purchases partition holds cart timers back (configurable)."""
    clicks, purchases = settings.topic(CLICKS), settings.topic(PURCHASES)
    await profile(redis, "c1")
    alerts_engine = engine(redis, settings)
    await alerts_engine.evaluate([update(click("a1", "c1", 0, kind="add_to_cart"))])
    await redis.set(watermark_key(purchases, 0), ms(at(20)))
    assert await alerts_engine.on_watermark(clicks, 0, ms(at(90))) == []
    [alert] = await alerts_engine.on_watermark(purchases, 0, ms(at(31)))
    assert alert.triggered_by == "a1"
    await alerts_engine.publish([alert])

    impatient = AlertConfig.model_validate({"cart_abandonment": {"wait_for_purchases": False}})
    other = engine(redis, settings, config=impatient)
    await profile(redis, "c2")
    await other.evaluate([update(click("b1", "c2", 0, kind="add_to_cart"))])
    assert [a.triggered_by for a in await other.on_watermark(clicks, 0, ms(at(90)))] == ["b1"]


async def test_one_batch_fires_the_due_carts_of_all_its_partitions(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """Verify that the watermarks of a whole micro-batch are handled in one call: each
    partition's carts fire by its own clicks watermark, held back by the purchases
    watermark of the same partition, whether that is in the batch or recorded in Redis."""
    clicks, purchases = settings.topic(CLICKS), settings.topic(PURCHASES)
    alerts_engine = engine(redis, settings)
    for customer, partition in (("c0", 0), ("c1", 1), ("c2", 2)):
        await profile(redis, customer, cart_adds=1)
        await alerts_engine.evaluate([update(click(f"a-{customer}", customer, 0,
                                                   kind="add_to_cart"), partition=partition)])
    await redis.set(watermark_key(purchases, 2), ms(at(10)))  # partition 2 lags on purchases
    fired = await alerts_engine.on_watermarks({
        (clicks, 0): ms(at(31)),
        (clicks, 1): ms(at(90)), (purchases, 1): ms(at(29)),  # held back within the batch
        (clicks, 2): ms(at(90)),
        (settings.topic("support.tickets"), 0): ms(at(99)),  # not a cart topic: ignored
    })
    assert [alert.triggered_by for alert in fired] == ["a-c0"]
    fired = await alerts_engine.on_watermarks({(purchases, 1): ms(at(31)),
                                               (purchases, 2): ms(at(31))})
    assert sorted(alert.triggered_by for alert in fired) == ["a-c1", "a-c2"]


async def test_an_erased_customers_cart_is_dropped(redis: aioredis.Redis,
                                                   settings: Settings) -> None:
    """Verify that a cart whose customer profile is gone fires nothing."""
    clicks = settings.topic(CLICKS)
    alerts_engine = engine(redis, settings)
    await alerts_engine.evaluate([update(click("a1", "gone", 0, kind="add_to_cart"))])
    assert await alerts_engine.on_watermark(clicks, 0, ms(at(31))) == []
    assert await redis.zcard(cart_timers_key(clicks, 0)) == 0


async def test_anonymous_visitors_get_no_alerts(redis: aioredis.Redis,
                                                settings: Settings) -> None:
    """Verify that a visitor's profile (anon:...) never alerts: there is no one to contact."""
    event = ticket("t1", "c1", 0)
    visitor = update(event, sentiment=-0.9)
    visitor = type(visitor)(**{**visitor.__dict__, "customer_id": "anon:v1"})
    assert await engine(redis, settings).evaluate([visitor]) == []


async def test_the_engine_follows_the_config_file_named_in_the_settings(
    redis: aioredis.Redis, settings: Settings, tmp_path: Path
) -> None:
    """Verify that CRM_ALERTS_CONFIG is read, and a change applies without a restart."""
    path = tmp_path / "alerts.yaml"
    path.write_text("reload_interval_s: 0.01\nnegative_ticket: {enabled: false}\n")
    alerts_engine = AlertEngine(redis=redis, settings=settings.model_copy(
        update={"alerts_config": path}), producer=FakeAlertProducer())
    assert await alerts_engine.evaluate([update(ticket("t1", "c1", 0), sentiment=-0.9)]) == []
    path.write_text("reload_interval_s: 0.01\nnegative_ticket: {enabled: true}\n")
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    await asyncio.sleep(0.02)
    [alert] = await alerts_engine.evaluate([update(ticket("t2", "c1", 0), sentiment=-0.9)])
    assert alert.triggered_by == "t2"
