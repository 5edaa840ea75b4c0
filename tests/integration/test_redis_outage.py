"""The worker waits out a Redis outage and resumes by itself, with exact features after it.

A simulated shop's traffic (5% of it re-sent) streams through the real ``crm worker`` while
the redis-server it writes to goes away mid-stream: killed and restarted on the same port
3 s later (its data back from the append-only file), or stopped (``SIGSTOP``) for 10 s and
continued. The worker must still be running afterwards, have processed every event, and
every profile must equal the offline recomputation from the same events.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from feature_store.keys import METRICS_KEY
from feature_store.reads import ProfileReader
from load_tests.chaos import inject_duplicates
from simulator import ShopSimulator
from stream.processes import ManagedProcess, free_port
from stream.settings import Settings
from tests.helpers import wait_for
from tests.integration.support import OwnRedis, caught_up, send
from tests.reference_features import assert_same_features, reference_profiles


def processed(client: redis.Redis) -> int:
    return sum(int(v) for v in client.hgetall(METRICS_KEY).values())  # type: ignore[union-attr]


def redis_waits(metrics_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("crm_worker_redis_waits_total{"))


def live_profiles(url: str, profile_ids: list[str]) -> dict[str, dict[str, Any]]:
    async def read() -> dict[str, dict[str, Any]]:
        client = aioredis.Redis.from_url(url)
        reader = ProfileReader(redis=client)
        try:
            profiles = {}
            for profile_id in profile_ids:
                profile = await reader.profile("default", profile_id)
                assert profile is not None, f"{profile_id} has no profile"
                profiles[profile_id] = profile.features.model_dump()
            return profiles
        finally:
            await client.aclose()

    return asyncio.run(read())


@pytest.mark.parametrize("outage", ["killed and restarted", "stopped for 10 s"])
def test_the_worker_waits_out_a_redis_outage_and_its_features_stay_exact(
    outage: str, settings: Settings, own_redis: OwnRedis,
    start_worker: Callable[..., ManagedProcess],
) -> None:
    """Verify that the worker survives Redis going away mid-stream, resumes by itself, and
    leaves every profile equal to the offline recomputation."""
    simulator = ShopSimulator(customers=400, seed=3, start=datetime(2025, 5, 1, tzinfo=UTC),
                              days=45)
    events = list(simulator.events())
    stream = inject_duplicates(events, 0.05, random.Random(7))
    client = redis.Redis.from_url(own_redis.url)
    metrics_port = free_port()
    # A deadline well below the pause, so stopped Redis is also waited out by retrying.
    worker = start_worker("worker", redis_url=own_redis.url, redis_deadline_s=2.0,
                          worker_metrics_port=metrics_port)
    last = send(settings, stream)
    wait_for(lambda: processed(client) >= 0.25 * len(stream), timeout=300, interval=0.05,
             alive=[worker], what="the worker to process a quarter of the stream")

    if outage == "killed and restarted":
        own_redis.kill()
        time.sleep(3)
        own_redis.restart()
    else:
        own_redis.pause(10)
    assert worker.is_running(), worker.log_tail(40)

    wait_for(caught_up(client, last), timeout=600, alive=[worker],
             what="the worker to process every event after the outage")
    assert worker.is_running()
    waits = redis_waits(metrics_port)
    assert waits > 0, "the worker never noticed the outage: it came too late to test anything"
    assert "Redis unavailable" in worker.log_path.read_text()

    expected = reference_profiles(events)
    profiles = live_profiles(own_redis.url, sorted(expected))
    for profile_id, features in expected.items():
        assert_same_features(profiles[profile_id], features, profile_id)
    print(f"{outage}: {len(stream)} events, {len(expected)} profiles exact, "
          f"{waits:.0f} waits on Redis")
