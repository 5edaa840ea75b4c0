"""The store's Redis client (feature_store.client) against a real redis-server: scripts
Redis forgot are loaded again, errors and failed batches leave no reply behind for the next
one, connections come back to the pool, a blocking pool keeps its bound."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import BlockingConnectionPool
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from feature_store.client import PipelineScript, connect, execute_pipeline


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """The worker's client: no per-reply timeout."""
    worker_client = connect(redis_url, socket_timeout=None)
    yield worker_client
    await worker_client.aclose()


@pytest.fixture
async def stock(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"client-test:{uuid.uuid4().hex[:8]}:"


async def test_an_error_reply_raises_after_every_reply_is_read(
        client: aioredis.Redis, prefix: str) -> None:
    await client.set(f"{prefix}k", "v")
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(f"{prefix}a", 1)
        pipe.lpush(f"{prefix}k", "x")  # WRONGTYPE: k holds a string
        pipe.set(f"{prefix}b", 2)
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await pipe.execute()
    # Every command ran, and the connection holds no stale reply for the next pipeline.
    async with client.pipeline(transaction=False) as pipe:
        pipe.mget([f"{prefix}a", f"{prefix}b"])
        pipe.get(f"{prefix}k")
        assert await pipe.execute() == [[b"1", b"2"], b"v"]


async def test_without_raise_on_error_the_error_takes_its_reply_place(
        client: aioredis.Redis, prefix: str) -> None:
    await client.set(f"{prefix}k", "v")
    async with client.pipeline(transaction=False) as pipe:
        pipe.get(f"{prefix}k")
        pipe.lpush(f"{prefix}k", "x")
        pipe.ping()
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    assert replies[0] == b"v" and replies[2] is True
    assert isinstance(replies[1], ResponseError)


async def test_a_batch_cancelled_while_waiting_leaves_no_reply_behind(
        client: aioredis.Redis, prefix: str) -> None:
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(f"{prefix}first", "1")
        pipe.blpop([f"{prefix}empty-list"], timeout=0.3)  # Redis answers only after 0.3 s
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await pipe.execute()
    await asyncio.sleep(0.4)  # the late BLPOP reply is on the wire of the dropped connection
    async with client.pipeline(transaction=False) as pipe:
        pipe.get(f"{prefix}first")
        pipe.echo("mine")
        assert await pipe.execute() == [b"1", b"mine"]


async def test_a_socket_timeout_still_bounds_the_replies(redis_url: str, prefix: str) -> None:
    client = connect(redis_url, socket_timeout=0.1)  # the API's client keeps a timeout
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.blpop([f"{prefix}empty-list"], timeout=0.5)
            with pytest.raises(RedisTimeoutError):
                await pipe.execute()
        await asyncio.sleep(0.5)
        async with client.pipeline(transaction=False) as pipe:
            pipe.echo("after")
            assert await pipe.execute() == [b"after"]
    finally:
        await client.aclose()


async def test_a_script_redis_forgot_is_loaded_and_the_pipeline_run_again(
        client: aioredis.Redis, prefix: str) -> None:
    script = PipelineScript(f"-- {prefix}\nreturn redis.call('INCR', KEYS[1])")
    await client.script_flush()

    def fill(pipe: Pipeline) -> None:
        script.queue(pipe, [f"{prefix}counter"])
        pipe.get(f"{prefix}counter")

    assert await execute_pipeline(client, fill, [script]) == [1, b"1"]


async def _slow_echo(client: aioredis.Redis, prefix: str, word: str) -> list[Any]:
    """A pipeline that holds its connection for 0.1 s, then echoes ``word``."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.blpop([f"{prefix}empty-{word}"], timeout=0.1)
        pipe.echo(word)
        return await pipe.execute()


async def test_concurrent_pipelines_each_take_a_connection_and_give_it_back(
        client: aioredis.Redis, prefix: str) -> None:
    replies = await asyncio.gather(*(_slow_echo(client, prefix, word) for word in "abc"))
    assert replies == [[None, b"a"], [None, b"b"], [None, b"c"]]
    pool: Any = client.connection_pool
    assert not pool._in_use_connections
    assert len(pool._available_connections) == 3  # the three ran at once, then came back


async def test_a_connection_the_server_closed_while_idle_is_replaced(
        client: aioredis.Redis, stock: aioredis.Redis, prefix: str) -> None:
    async with client.pipeline(transaction=False) as pipe:
        pipe.client_id()
        (client_id,) = await pipe.execute()
    await stock.client_kill_filter(_id=client_id)  # as a Redis restart would
    await asyncio.sleep(0.05)  # the event loop sees the connection close
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(f"{prefix}after", "1")
        pipe.client_id()
        done, new_id = await pipe.execute()
    assert done is True and new_id != client_id


async def test_a_blocking_pool_keeps_its_bound(redis_url: str, prefix: str) -> None:
    client = connect(redis_url, pool_class=BlockingConnectionPool, max_connections=1,
                     timeout=5)
    try:
        replies = await asyncio.gather(*(_slow_echo(client, prefix, word) for word in "ab"))
        assert replies == [[None, b"a"], [None, b"b"]]
        pool: Any = client.connection_pool
        assert len(pool._available_connections) + len(pool._in_use_connections) == 1
    finally:
        await client.aclose()
