"""Marketing automation gets one alert per trigger when nothing fails.

A simulated shop's traffic, 5% of it sent twice with the same ``event_id`` (as an
at-least-once shop or network does), streams through the real ``crm worker``. Without a
crash or a restart, ``crm.alerts`` must then hold every alert id once: a duplicate the
shop sent is not a redelivery, so it must not repeat its trigger's alert.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from feature_store.keys import ALERTS_STREAM_KEY
from load_tests.chaos import inject_duplicates
from schemas.topics import ALERTS
from simulator import ShopSimulator
from stream.processes import ManagedProcess
from stream.settings import Settings, kafka_client_config
from tests.helpers import wait_for
from tests.integration.support import caught_up, send


def read_alert_topic(settings: Settings, quiet_s: float = 5.0, timeout_s: float = 120.0
                     ) -> list[tuple[int, int, bytes]]:
    """Every message on crm.alerts as (partition, offset, value), once nothing new came for
    ``quiet_s``."""
    consumer = Consumer({**kafka_client_config(settings), "group.id": f"{settings.app_id}-once",
                         "enable.auto.commit": False})
    topic = settings.topic(ALERTS)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                     for p in range(settings.partitions)])
    messages: list[tuple[int, int, bytes]] = []
    deadline, last = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - last < quiet_s:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            last = time.monotonic()
            messages.append((message.partition(), message.offset(), message.value() or b""))
    finally:
        consumer.close()
    return messages


def test_without_faults_every_alert_id_is_on_the_topic_once(
    settings: Settings, start_worker: Callable[..., ManagedProcess]
) -> None:
    """Verify that simulated traffic with 5% of its events re-sent by the shop puts each
    alert id on crm.alerts once, and that the alerts' feed in Redis holds the same ids."""
    simulator = ShopSimulator(customers=300, seed=7, start=datetime(2025, 3, 1, tzinfo=UTC),
                              days=60)
    events = list(simulator.events())
    stream = inject_duplicates(events, 0.05, random.Random(24))
    resent = {event_id for event_id, count in
              collections.Counter(str(e["event_id"]) for e in stream).items() if count > 1}
    client = redis.Redis.from_url(settings.redis_url)

    worker = start_worker("worker")
    last = send(settings, stream)
    wait_for(caught_up(client, last), timeout=600, alive=[worker],
             what="the worker to process every event")

    messages = read_alert_topic(settings)
    by_id: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    triggers: set[str] = set()
    for partition, offset, value in messages:
        alert = orjson.loads(value)
        by_id[alert["alert_id"]].append((partition, offset))
        triggers.add(alert["triggered_by"])
    repeated = {alert_id: places for alert_id, places in by_id.items() if len(places) > 1}
    resent_triggers = triggers & resent
    print(f"{len(stream)} events ({len(resent)} re-sent), {len(messages)} alerts, "
          f"{len(resent_triggers)} of their triggers re-sent, {len(repeated)} repeated ids")
    # Else the test proves nothing: a worker that repeats alerts for re-sent events would pass.
    assert len(resent_triggers) >= 10, "too few re-sent triggers to tell"
    assert not repeated, f"{len(repeated)} alert ids repeated: {list(repeated.items())[:5]}"
    assert worker.is_running()
    feed = client.xrange(ALERTS_STREAM_KEY)
    assert sorted(orjson.loads(fields[b"alert"])["alert_id"] for _, fields in feed) == sorted(
        by_id), "the feed holds the alerts of the topic"
