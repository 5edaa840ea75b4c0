"""The features are exact under the worst a stream can do, on a real broker and real Redis.

100,000+ simulated events with 5% exact duplicates, 2% malformed events of every kind and 10%
out of order are replayed through Kafka while the worker is SIGKILLed mid-stream and
restarted. Afterwards every profile in Redis must equal an offline recomputation from the
same event list, and ``crm.deadletter`` must hold exactly the malformed events.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import orjson
import redis
from confluent_kafka import Consumer

from feature_store.keys import METRICS_KEY, progress_key
from load_tests.chaos import inject_duplicates, malformed_events, shuffle_out_of_order
from schemas.topics import DEADLETTER
from simulator import TOPIC_BY_TYPE, ShopSimulator
from stream.processes import ManagedProcess
from stream.producer import EventProducer
from stream.settings import Settings, kafka_client_config
from tests.helpers import wait_for
from tests.integration.support import assert_profiles_exact

EVENTS = 100_000


def processed_count(client: redis.Redis) -> int:
    counts = client.hgetall(METRICS_KEY)
    return sum(int(value) for value in counts.values())  # type: ignore[union-attr]


def read_dead_letters(settings: Settings, expected: int, timeout: float) -> list[dict[str, Any]]:
    consumer = Consumer({**kafka_client_config(settings), "group.id": f"{settings.app_id}-dlq",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([settings.topic(DEADLETTER)])
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                # Stop once we have enough and nothing more arrived for a while.
                if len(records) >= expected and time.monotonic() - quiet_since > 5:
                    break
                continue
            quiet_since = time.monotonic()
            records.append(orjson.loads(message.value()))
    finally:
        consumer.close()
    return records


def test_features_are_exact_after_duplicates_disorder_garbage_and_a_crash(
    settings: Settings, start_worker: Callable[..., ManagedProcess]
) -> None:
    """Verify that every profile equals the offline recomputation and the DLQ is exact."""
    rng = random.Random(2026)
    simulator = ShopSimulator(customers=4000, seed=5, start=datetime(2025, 2, 1, tzinfo=UTC),
                              days=150)
    events = list(islice(simulator.events(), EVENTS))
    assert len(events) == EVENTS, "the simulation must yield enough events"
    valid = [(TOPIC_BY_TYPE[e["type"]], e) for e in events]
    delivered = shuffle_out_of_order(inject_duplicates(valid, 0.05, rng), 0.10, 400, rng)
    malformed = malformed_events(rng, round(0.02 * EVENTS))
    stream: list[tuple[str, str | None, bytes, str | None]] = [
        (settings.topic(topic), event.get("customer_id") or f"anon:{event['anonymous_id']}",
         orjson.dumps(event), None) for topic, event in delivered]
    for topic, key, payload, code in malformed:
        stream.insert(rng.randrange(len(stream) + 1), (settings.topic(topic), key, payload, code))

    dead_letter_sources: dict[tuple[str, int, int], str] = {}
    last_offsets: dict[tuple[str, int], int] = {}

    def remember(code: str | None) -> Callable[[str, int, int], None]:
        def on_delivered(topic: str, partition: int, offset: int) -> None:
            key = (topic, partition)
            last_offsets[key] = max(last_offsets.get(key, -1), offset)
            if code is not None:
                dead_letter_sources[(topic, partition, offset)] = code
        return on_delivered

    with EventProducer(settings=settings) as producer:
        for topic, key, payload, code in stream:
            producer.send_raw(topic, key, payload, on_delivered=remember(code))
    assert len(dead_letter_sources) == len(malformed)

    client = redis.Redis.from_url(settings.redis_url)
    first = start_worker("worker-1")
    wait_for(lambda: processed_count(client) >= 0.35 * len(stream), timeout=180,
             what="the first worker to process a third of the stream", interval=0.05,
             alive=[first])
    first.kill()  # SIGKILL: no shutdown, no final commit
    second = start_worker("worker-2")

    def caught_up() -> bool:
        done = client.mget([progress_key(t, p) for (t, p) in last_offsets])
        return all(value is not None and int(value) >= last_offsets[key]
                   for key, value in zip(last_offsets, done, strict=True))

    wait_for(caught_up, timeout=300, what="the restarted worker to reach the end offsets",
             alive=[second])

    checked = assert_profiles_exact(settings.redis_url, [event for _, event in valid])

    letters = read_dead_letters(settings, len(malformed), timeout=120)
    by_source = {(d["source_topic"], d["source_partition"], d["source_offset"]): d
                 for d in letters}
    assert set(by_source) == set(dead_letter_sources), "the DLQ must hold the malformed events"
    for source, code in dead_letter_sources.items():
        assert by_source[source]["error_code"] == code, by_source[source]
    repeats = len(letters) - len(by_source)
    # A crash between flushing dead letters and recording progress may repeat a batch's
    # dead letters (same dead_letter_id); it can never lose one.
    assert repeats <= 500, f"{repeats} repeated dead letters"
    print(f"{len(stream)} messages, {checked} profiles exact, "
          f"{len(by_source)} dead letters ({repeats} repeated after the crash)")
