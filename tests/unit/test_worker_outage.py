"""While Redis is away a timer's tick is skipped and counted, never the worker's end."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from agents.outage import REDIS_UNAVAILABLE, skip_tick_without_redis, wait_for_redis


def waits(task: str) -> float:
    return REGISTRY.get_sample_value("crm_worker_redis_waits_total", {"task": task}) or 0.0


async def test_a_tick_that_loses_redis_is_skipped_and_counted() -> None:
    """Verify that a refused connection, a LOADING reply and a tick past its deadline end
    the tick quietly, each counted."""
    before = waits("telemetry")
    async with skip_tick_without_redis("telemetry", deadline_s=5):
        raise RedisConnectionError("Connection refused")
    async with skip_tick_without_redis("telemetry", deadline_s=5):
        raise BusyLoadingError("Redis is loading the dataset in memory")
    async with skip_tick_without_redis("telemetry", deadline_s=0.01):
        await asyncio.sleep(1)  # Redis stopped: no answer
    assert waits("telemetry") == before + 3


async def test_other_errors_still_surface() -> None:
    """Verify that only Redis being away is waited out: a bug still raises."""
    with pytest.raises(KeyError):
        async with skip_tick_without_redis("telemetry", deadline_s=5):
            raise KeyError("a bug")


async def test_waiting_for_redis_backs_off_and_counts() -> None:
    """Verify that a failed batch attempt is counted and waited after, briefly at first."""
    before = waits("batch")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wait_for_redis(RedisConnectionError("reset"), 1, what="batch", task="batch")
    assert 0.09 <= loop.time() - started < 1.0
    assert waits("batch") == before + 1
    assert TimeoutError in REDIS_UNAVAILABLE
