"""Redis clients for the store: redis-py's asyncio client, with hiredis packing commands and
a leaner reply path for non-transactional pipelines.

redis-py's synchronous client packs commands with hiredis when it is installed, but its
asyncio client always packs them in pure Python: about 23 µs for the 23-argument EVALSHA the
store sends per event, against about 2.5 µs with ``hiredis.pack_command``. At thousands of
events per second per worker that difference is most of the Python cost of a batch.

Reading a pipeline's replies costs redis-py about as much again: every reply goes through
``Redis.parse_response`` and ``Connection.read_response`` (a timeout context, a host string
for error messages, the exception wrapping), which a pipeline of thousands of replies pays
thousands of times. :class:`LeanPipeline` takes the replies from the hiredis parser directly
and applies redis-py's own reply callbacks, so callers see exactly what redis-py answers, for
about a third less client CPU per pipelined command (``load_tests/bench_redis_client``).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.client import EMPTY_RESPONSE, NEVER_DECODE, Pipeline
from redis.asyncio.connection import (
    BlockingConnectionPool,
    Connection,
    ConnectionPool,
    SSLConnection,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: What a round trip raises while Redis is away: refused, reset or closed connections and
#: ``LOADING`` replies (redis-py's ``ConnectionError`` family) and its socket timeouts.
STORE_UNAVAILABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis is a dependency; stay correct without it
    hiredis = None  # type: ignore[assignment]


class _HiredisPacking:
    """Mixin: pack commands with hiredis (same bytes as redis-py's Python packer), and read a
    pipeline's replies straight from the hiredis parser (see :class:`LeanPipeline`)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return [hiredis.pack_command(_split_command_name(args))]

    def pack_commands(self, commands: Iterable[Any]) -> list[bytes]:
        return [b"".join(hiredis.pack_command(_split_command_name(tuple(command)))
                         for command in commands)]

    async def read_replies(self, never_decode: Sequence[bool]) -> list[Any]:
        """One reply per entry of ``never_decode`` (true: leave that reply undecoded), error
        replies returned in place as exceptions.

        The connection's ``socket_timeout``, when it has one, bounds the whole read (redis-py
        bounds each reply with it). Like ``Connection.read_response``, a failure part way (a
        timeout, the server gone, a cancelled batch) disconnects, so no later command can read
        this pipeline's leftover replies.
        """
        connection = cast(Connection, self)
        parser: Any = connection._parser  # every redis-py parser reads this way
        replies = []
        try:
            async with asyncio.timeout(connection.socket_timeout):
                for raw in never_decode:
                    replies.append(await parser.read_response(disable_decoding=raw))
        except TimeoutError as error:
            await connection.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout reading from Redis") from error
        except OSError as error:
            await connection.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while reading from Redis: {error}") from error
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        return replies


def _split_command_name(args: tuple[Any, ...]) -> tuple[Any, ...]:
    # redis-py sends multi-word command names ("CLIENT SETNAME") as one string; split them.
    first = args[0]
    if isinstance(first, str) and " " in first:
        return (*first.split(), *args[1:])
    if isinstance(first, bytes) and b" " in first:
        return (*first.split(), *args[1:])
    return args


def _closed_by_server(connection: Connection) -> bool:
    """Whether the server closed this idle connection (the event loop saw its end of file).

    redis-py 8's pool skips this check whenever maintenance notifications are enabled, and
    their default ("auto") counts as enabled: the first command on such a connection fails."""
    stream = getattr(connection._parser, "_stream", None)
    return stream is not None and stream.at_eof()


class HiredisConnection(_HiredisPacking, Connection):
    pass


class HiredisSSLConnection(_HiredisPacking, SSLConnection):
    pass


class LeanPipeline(Pipeline):
    """A non-transactional pipeline whose replies come straight from the hiredis parser.

    The commands are queued, packed and sent as by redis-py; the replies are then read in one
    loop and passed through the client's own response callbacks, as
    ``Redis.parse_response`` does, so every reply is what a redis-py pipeline answers. What
    is skipped is per-reply machinery a pipeline does not need: a timeout context per reply (one
    bounds the whole read instead), the host string built for an error message that is
    almost never raised, and three layers of coroutine calls. Also skipped: redis-py 8's
    preparation of ``HIMPORT`` field sets, which nothing here uses.

    Each round trip also skips redis-py's per-execute machinery: the pool's lock, its
    connection events and observability hooks, the retry wrapper (the worker's connections
    retry nothing), and a shielded task to release the connection: about 40 of the 190 µs
    of client CPU of a 24-command pipeline, measured alternating both ways in one process. A
    batch at 2,000 events/s sends about six such pipelines. A blocking pool (the API's,
    which bounds its connections), a pipeline with ``WATCH`` or redis-py scripts, and a
    connection without hiredis packing keep redis-py's path.
    """

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        pool = self.connection_pool
        if (self.scripts or self.watching or self.connection is not None
                or isinstance(pool, BlockingConnectionPool)
                or not issubclass(pool.connection_class, _HiredisPacking)):
            return cast(list[Any], await super().execute(raise_on_error))
        commands, self.command_stack = self.command_stack, []
        if not commands:
            return []
        # The pool's own bookkeeping without its lock and its events: taking a connection
        # and marking it in use is one step with no await inside.
        connection = pool.get_available_connection()
        try:
            if connection.is_connected and _closed_by_server(connection):
                await connection.disconnect()  # e.g. Redis restarted while it was idle
            await connection.connect()
            return await self._execute_pipeline(connection, commands, raise_on_error)
        finally:
            pool._in_use_connections.discard(connection)
            pool._available_connections.append(connection)

    async def _execute_pipeline(self, connection: Connection, commands: Any,
                                raise_on_error: bool) -> list[Any]:
        if not isinstance(connection, _HiredisPacking):
            return cast(list[Any], await super()._execute_pipeline(
                connection, commands, raise_on_error))
        # A send that fails or is cancelled part way disconnects (redis-py does so itself).
        await connection.send_packed_command(
            connection.pack_commands([args for args, _ in commands]))
        replies = await connection.read_replies(
            [NEVER_DECODE in options for _, options in commands])
        callbacks = self.response_callbacks
        response: list[Any] = []
        for (args, options), reply in zip(commands, replies, strict=True):
            if isinstance(reply, ResponseError):
                response.append(options.get(EMPTY_RESPONSE, reply))
                continue
            callback = callbacks.get(args[0])
            if callback is not None:
                options = {key: value for key, value in options.items()
                           if key not in (EMPTY_RESPONSE, NEVER_DECODE, "keys")}
                reply = callback(reply, **options)
                if inspect.isawaitable(reply):
                    reply = await reply
            response.append(reply)
        if raise_on_error:
            self.raise_first_error(commands, response)
        return response


class LeanRedis(aioredis.Redis):
    """redis-py's asyncio client whose non-transactional pipelines are :class:`LeanPipeline`
    (``MULTI``/``EXEC`` pipelines stay redis-py's)."""

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        if transaction:
            return super().pipeline(transaction, shard_hint)
        return LeanPipeline(self.connection_pool, self.response_callbacks, transaction,
                            shard_hint)


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
    return LeanRedis.from_pool(pool_class.from_url(url, **options))


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
