"""The store's Redis client: redis-py's asyncio client as shipped, and Lua scripts queued on
its pipelines without a round trip of their own.

The worker's batch sends few commands per round trip (one script per customer, see
``feature_store/lua/apply_customer.lua``), so redis-py's cost per command is a small share
of a batch; the client is used as shipped, so swapping in its cluster client changes only
:func:`connect`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: What a round trip raises while Redis is away: refused, reset or closed connections and
#: ``LOADING`` replies (redis-py's ``ConnectionError`` family) and its socket timeouts.
STORE_UNAVAILABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)


def connect(url: str, *, pool_class: type[ConnectionPool] = ConnectionPool,
            **options: Any) -> aioredis.Redis:
    """An asyncio Redis client for ``url`` (``redis://``, ``rediss://`` or ``unix://``) that
    owns its pool (closing the client closes it). ``pool_class`` and ``options`` go to the
    pool, e.g. ``BlockingConnectionPool`` with ``max_connections`` and ``timeout`` to make
    requests wait for a busy pool rather than fail.

    ``socket_timeout=None`` drops redis-py's per-reply timeout (it wraps every reply read in
    an ``asyncio.timeout``); a caller that does so bounds its work with a deadline of its own
    (the worker: one per batch)."""
    return aioredis.Redis.from_pool(pool_class.from_url(url, **options))


class PipelineScript:
    """A Lua script queued on pipelines as a bare ``EVALSHA``.

    redis-py's ``Script`` makes every pipeline it is queued on ask ``SCRIPT EXISTS`` first, in
    a round trip of its own on each execute. This one assumes Redis has the script, and
    :func:`execute_pipeline` loads it and runs the pipeline again only when Redis answers
    ``NOSCRIPT`` (after a restart or a ``SCRIPT FLUSH``).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def queue(self, pipe: Pipeline, keys: Sequence[Any], args: Sequence[Any] = ()) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)


async def execute_pipeline(redis: aioredis.Redis, fill: Callable[[Pipeline], None],
                           scripts: Sequence[PipelineScript]) -> list[Any]:
    """Run a non-transactional pipeline that ``fill`` queues, ``scripts`` among its commands.

    On ``NOSCRIPT`` the scripts are loaded and the pipeline runs once more, so every command
    ``fill`` queues must be safe to repeat (the store's scripts are at most once by event id;
    reads are reads).
    """
    for attempt in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            fill(pipe)
            try:
                return await pipe.execute()
            except NoScriptError:
                if attempt:
                    raise
        for script in scripts:
            await redis.script_load(script.source)
    raise AssertionError("unreachable")  # pragma: no cover
