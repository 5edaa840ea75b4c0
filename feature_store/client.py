"""Redis clients for the store: redis-py's asyncio client, with hiredis packing commands.

redis-py's synchronous client packs commands with hiredis when it is installed, but its
asyncio client always packs them in pure Python: about 23 µs for the 23-argument EVALSHA the
store sends per event, against about 2.5 µs with ``hiredis.pack_command``. At thousands of
events per second per worker that difference is most of the Python cost of a batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, ConnectionPool, SSLConnection

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
