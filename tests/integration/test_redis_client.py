"""The worker's Redis client (feature_store.client) against a real redis-server: its lean
pipelines answer exactly what redis-py's pipelines answer, errors included, and a batch that
fails part way never leaves a reply behind for the next one."""

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

from feature_store.client import LeanPipeline, PipelineScript, connect, execute_pipeline


@pytest.fixture
async def lean(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = connect(redis_url, socket_timeout=None)
    yield client
    await client.aclose()


@pytest.fixture
async def stock(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"client-test:{uuid.uuid4().hex[:8]}:"


async def _seed(client: aioredis.Redis, prefix: str) -> None:
    await client.hset(f"{prefix}h", mapping={"a": "1", "b": "two", "f": "0"})
    await client.zadd(f"{prefix}z", {"x": 1.5, "y": 2.0})
    await client.sadd(f"{prefix}s", "m1", "m2")
    await client.set(f"{prefix}k", "v")


def _every_kind_of_reply(pipe: Pipeline, prefix: str) -> None:
    pipe.hgetall(f"{prefix}h")
    pipe.zrange(f"{prefix}z", 0, -1, withscores=True)
    pipe.zrevrangebyscore(f"{prefix}z", "+inf", "-inf", withscores=True)
    pipe.smembers(f"{prefix}s")
    pipe.set(f"{prefix}k", "v")
    pipe.get(f"{prefix}missing")
    pipe.mget([f"{prefix}k", f"{prefix}missing"])
    pipe.zadd(f"{prefix}z", {"x": 1.5})
    pipe.zcount(f"{prefix}z", "-inf", 1.5)
    pipe.zscore(f"{prefix}z", "y")
    pipe.hincrbyfloat(f"{prefix}h", "f", 0.0)
    pipe.exists(f"{prefix}h", f"{prefix}missing")
    pipe.eval("return {1, 'two', {3}}", 0)
    pipe.ping()


async def test_a_lean_pipeline_answers_what_redis_py_answers(
        lean: aioredis.Redis, stock: aioredis.Redis, prefix: str) -> None:
    await _seed(stock, prefix)
    async with lean.pipeline(transaction=False) as pipe:
        assert isinstance(pipe, LeanPipeline)
        _every_kind_of_reply(pipe, prefix)
        ours = await pipe.execute()
    async with stock.pipeline(transaction=False) as pipe:
        _every_kind_of_reply(pipe, prefix)
        theirs = await pipe.execute()
    assert ours == theirs
    # The reply callbacks ran: HGETALL is a dict, not a flat list.
    assert ours[0] == {b"a": b"1", b"b": b"two", b"f": b"0"}
    assert ours[1] == [(b"x", 1.5), (b"y", 2.0)]


async def test_decoded_replies_stay_decoded(redis_url: str, prefix: str) -> None:
    client = connect(redis_url, socket_timeout=None, decode_responses=True)
    try:
        await _seed(client, prefix)
        async with client.pipeline(transaction=False) as pipe:
            pipe.hgetall(f"{prefix}h")
            pipe.smembers(f"{prefix}s")
            assert await pipe.execute() == [{"a": "1", "b": "two", "f": "0"}, {"m1", "m2"}]
    finally:
        await client.aclose()


async def test_an_error_reply_raises_after_every_reply_is_read(
        lean: aioredis.Redis, prefix: str) -> None:
    await lean.set(f"{prefix}k", "v")
    async with lean.pipeline(transaction=False) as pipe:
        pipe.set(f"{prefix}a", 1)
        pipe.lpush(f"{prefix}k", "x")  # WRONGTYPE: k holds a string
        pipe.set(f"{prefix}b", 2)
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await pipe.execute()
    # Every command ran, and the connection holds no stale reply for the next pipeline.
    async with lean.pipeline(transaction=False) as pipe:
        pipe.mget([f"{prefix}a", f"{prefix}b"])
        pipe.get(f"{prefix}k")
        assert await pipe.execute() == [[b"1", b"2"], b"v"]


async def test_without_raise_on_error_the_error_takes_its_reply_place(
        lean: aioredis.Redis, prefix: str) -> None:
    await lean.set(f"{prefix}k", "v")
    async with lean.pipeline(transaction=False) as pipe:
        pipe.get(f"{prefix}k")
        pipe.lpush(f"{prefix}k", "x")
        pipe.ping()
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    assert replies[0] == b"v" and replies[2] is True
    assert isinstance(replies[1], ResponseError)


async def test_a_batch_cancelled_while_waiting_leaves_no_reply_behind(
        lean: aioredis.Redis, prefix: str) -> None:
    async with lean.pipeline(transaction=False) as pipe:
        pipe.set(f"{prefix}first", "1")
        pipe.blpop([f"{prefix}empty-list"], timeout=0.3)  # Redis answers only after 0.3 s
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await pipe.execute()
    await asyncio.sleep(0.4)  # the late BLPOP reply is on the wire of the dropped connection
    async with lean.pipeline(transaction=False) as pipe:
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


async def test_transactions_stay_redis_pys(lean: aioredis.Redis, prefix: str) -> None:
    async with lean.pipeline(transaction=True) as pipe:
        assert not isinstance(pipe, LeanPipeline)
        pipe.incr(f"{prefix}n")
        pipe.incr(f"{prefix}n")
        assert await pipe.execute() == [1, 2]


async def test_a_script_redis_forgot_is_loaded_and_the_pipeline_run_again(
        lean: aioredis.Redis, prefix: str) -> None:
    script = PipelineScript(f"-- {prefix}\nreturn redis.call('INCR', KEYS[1])")
    await lean.script_flush()

    def fill(pipe: Pipeline) -> None:
        script.queue(pipe, [f"{prefix}counter"])
        pipe.get(f"{prefix}counter")

    assert await execute_pipeline(lean, fill, [script]) == [1, b"1"]


async def _slow_echo(client: aioredis.Redis, prefix: str, word: str) -> list[Any]:
    """A pipeline that holds its connection for 0.1 s, then echoes ``word``."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.blpop([f"{prefix}empty-{word}"], timeout=0.1)
        pipe.echo(word)
        return await pipe.execute()


async def test_concurrent_pipelines_each_take_a_connection_and_give_it_back(
        lean: aioredis.Redis, prefix: str) -> None:
    replies = await asyncio.gather(*(_slow_echo(lean, prefix, word) for word in "abc"))
    assert replies == [[None, b"a"], [None, b"b"], [None, b"c"]]
    pool: Any = lean.connection_pool
    assert not pool._in_use_connections
    assert len(pool._available_connections) == 3  # the three ran at once, then came back


async def test_a_connection_the_server_closed_while_idle_is_replaced(
        lean: aioredis.Redis, stock: aioredis.Redis, prefix: str) -> None:
    async with lean.pipeline(transaction=False) as pipe:
        pipe.client_id()
        (client_id,) = await pipe.execute()
    await stock.client_kill_filter(_id=client_id)  # as a Redis restart would
    await asyncio.sleep(0.05)  # the event loop sees the connection close
    async with lean.pipeline(transaction=False) as pipe:
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
