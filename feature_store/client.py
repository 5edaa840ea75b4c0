"""Redis clients for the store: redis-py's asyncio client, with hiredis packing commands.

redis-py's synchronous client packs commands with hiredis when it is installed, but its
asyncio client always packs them in pure Python: about 23 µs for the 23-argument EVALSHA the
store sends per event, against about 2.5 µs with ``hiredis.pack_command``. At thousands of
events per second per worker that difference is most of the Python cost of a batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import Connection, ConnectionPool, SSLConnection
from redis.exceptions import NoScriptError

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis is a dependency; stay correct without it
    hiredis = None  # type: ignore[assignment]


class _HiredisPacking:
    """Mixin: pack commands with hiredis (same bytes as redis-py's Python packer)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return [hiredis.pack_command(_split_command_name(args))]

    def pack_commands(self, commands: Iterable[Any]) -> list[bytes]:
        return [b"".join(hiredis.pack_command(_split_command_name(tuple(command)))
                         for command in commands)]


def _split_command_name(args: tuple[Any, ...]) -> tuple[Any, ...]:
    # redis-py sends multi-word command names ("CLIENT SETNAME") as one string; split them.
    first = args[0]
    if isinstance(first, str) and " " in first:
        return (*first.split(), *args[1:])
    if isinstance(first, bytes) and b" " in first:
        return (*first.split(), *args[1:])
    return args


class HiredisConnection(_HiredisPacking, Connection):
    pass


class HiredisSSLConnection(_HiredisPacking, SSLConnection):
    pass


def connect(url: str, *, pool_class: type[ConnectionPool] = ConnectionPool,
            **options: Any) -> aioredis.Redis:
    """An asyncio Redis client for ``url`` (``redis://``, ``rediss://`` or ``unix://``) that
    owns its pool (closing the client closes it). ``pool_class`` and ``options`` go to the
    pool, e.g. ``BlockingConnectionPool`` with ``max_connections`` and ``timeout`` to make
    requests wait for a busy pool rather than fail.

    ``socket_timeout=None`` drops redis-py's per-reply timeout: it wraps every reply read in
    an ``asyncio.timeout``, which took a pipelined command from 7.8 to 13.8 µs of client CPU.
    A caller that does so bounds its work with a deadline of its own (the worker: one per
    batch)."""
    if hiredis is not None and url.startswith(("redis://", "rediss://")):
        connection_class = HiredisSSLConnection if url.startswith("rediss://") else (
            HiredisConnection)
        options.setdefault("connection_class", connection_class)
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
