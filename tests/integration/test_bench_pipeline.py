"""The worker-throughput benchmark runs the worker's whole in-process path against a real
redis-server: a change to the worker's interfaces must not leave the benchmark broken."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from agents.pipeline import RawMessage
from feature_store.keys import ranking_key
from load_tests.bench_pipeline import in_process
from load_tests.simulator import TOPIC_BY_TYPE, ShopSimulator
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

    rate = await in_process(settings, batches, with_models=True)

    assert rate > 0
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.zcard(ranking_key("default", "churn")) > 0
    finally:
        await client.aclose()
