"""The worker-throughput benchmark runs the worker's whole in-process path against a real
redis-server: a change to the worker's interfaces must not leave the benchmark broken."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from agents.decoding import RawMessage
from feature_store.keys import CustomerKeys, scoring_index_key
from load_tests.bench_pipeline import in_process
from simulator import TOPIC_BY_TYPE, ShopSimulator
from stream.settings import Settings


async def test_the_full_stage_scores_customers_without_a_broker(
        redis_url: str, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9", redis_url=redis_url,
                        checkpoint_dir=tmp_path)
    simulator = ShopSimulator(customers=50, seed=3, start=datetime(2025, 3, 1, tzinfo=UTC))
    offsets: dict[str, int] = {}
    messages = []
    for event in islice(simulator.events(), 400):
        topic = TOPIC_BY_TYPE[event["type"]]
        offsets[topic] = offsets.get(topic, -1) + 1
        messages.append(RawMessage(topic, 0, offsets[topic], orjson.dumps(event)))
    batches = [messages[i:i + 50] for i in range(0, len(messages), 50)]

    rate, steps = await in_process(settings, batches, with_models=True)

    assert rate > 0 and steps["models"] > 0
    client = aioredis.Redis.from_url(redis_url)
    try:
        scored = [customer for customer in await client.zrange(scoring_index_key("default", 0),
                                                               0, -1)]
        assert scored, "the full stage writes every customer's scores"
        assert await client.hget(CustomerKeys("default", scored[0].decode()).profile,
                                 "churn_status") is not None
    finally:
        await client.aclose()
