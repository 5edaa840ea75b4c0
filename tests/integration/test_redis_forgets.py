"""When Redis loses its last writes, the worker processes the lost events again.

Redis may come back without its last second of writes (an append-only file fsynced every
second and a host that died, a replica promoted behind its primary) while the consumer, and
Kafka's committed offsets, are already past them. Kafka will not deliver those events again:
the pipeline must notice that Redis's progress is behind and read them from the broker.

Both ways of noticing are tested on a real broker and redis-server: a worker that reads the
partition's progress (after a start, a rebalance or a failed batch) and finds it behind the
first message it is given, and a running worker whose next batch finds Redis's started mark
behind the one it wrote (``ProgressLost``), after which the batch is retried as after an
outage. Redis "losing" writes is ``SWAPDB`` with a database that holds only the first ones.
"""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis
from confluent_kafka import Producer

from agents.batch import Worker, process_batch
from agents.decoding import RawMessage
from feature_store import FeatureStore, ProgressLost
from feature_store.keys import CustomerKeys, progress_key
from schemas.topics import CLICKS
from stream.rereads import PartitionReader
from stream.settings import Settings, kafka_client_config
from tests.unit.support import FakeAlertProducer, batch_worker, click


def produce_views(settings: Settings, count: int) -> list[RawMessage]:
    """``count`` page views of customer c1 on partition 0 of the clicks topic, as sent."""
    topic = settings.topic(CLICKS)
    producer = Producer(kafka_client_config(settings))
    values = [orjson.dumps(click(f"e{n}", "c1", minutes=n).model_dump(
        mode="json", exclude_none=True)) for n in range(count)]
    for value in values:
        producer.produce(topic, value, key=b"c1", partition=0)
    assert producer.flush(30) == 0
    return [RawMessage(topic, 0, offset, value) for offset, value in enumerate(values)]


def new_pipeline(redis: aioredis.Redis, settings: Settings) -> Worker:
    """A worker's batch steps as after a (re)start, reading what Redis forgot again."""
    worker = batch_worker(FeatureStore(redis=redis), settings, producer=FakeAlertProducer())
    worker.rereads = PartitionReader(settings=settings)
    return worker


async def views(redis: aioredis.Redis) -> int:
    return int(await redis.hget(CustomerKeys("default", "c1").profile, "views") or 0)


@pytest.fixture
async def other_db(redis_url: str) -> aioredis.Redis:
    """Database 1 of the session's redis-server, emptied: Redis as it will come back."""
    client = aioredis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/1")
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


async def test_a_worker_finding_progress_behind_its_first_message_reads_the_gap_again(
        settings: Settings, store: FeatureStore) -> None:
    """Verify that a (re)started worker whose consumer resumes at offset 10 while Redis
    knows only offsets 0-4 as done processes offsets 5-9 again from the broker."""
    messages = produce_views(settings, 15)
    await process_batch(new_pipeline(store.redis, settings), messages[:5])
    # Offsets 5-9 were processed and committed to Kafka, then Redis forgot them.
    restarted = new_pipeline(store.redis, settings)
    await process_batch(restarted, messages[10:])
    assert await views(store.redis) == 15
    assert int(await store.redis.get(progress_key(messages[0].topic, 0))) == 14


async def test_a_running_worker_notices_redis_forgot_and_its_retry_reads_the_gap_again(
        settings: Settings, store: FeatureStore, other_db: aioredis.Redis) -> None:
    """Verify that the batch after Redis came back without its last writes fails with
    ProgressLost, and that its retry (as after an outage) applies every event once."""
    messages = produce_views(settings, 15)
    pipeline = new_pipeline(store.redis, settings)
    await process_batch(pipeline, messages[:5])
    await process_batch(new_pipeline(other_db, settings), messages[:5])  # what Redis keeps
    await process_batch(pipeline, messages[5:10])
    await store.redis.swapdb(0, 1)  # Redis is back with offsets 0-4 only

    with pytest.raises(ProgressLost):
        await process_batch(pipeline, messages[10:])
    pipeline.partitions.forget()  # what the agent does before it retries a failed batch
    await process_batch(pipeline, messages[10:])
    assert await views(store.redis) == 15
