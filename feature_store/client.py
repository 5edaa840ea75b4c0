"""The store's Redis client: redis-py's asyncio client (or its cluster client) as shipped, and
Lua scripts queued on its pipelines without a round trip of their own.

The worker's batch sends few commands per round trip (one script per customer, see
``feature_store/lua/apply_customer.lua``), so redis-py's cost per command is a small share
of a batch; the client is used as shipped.

On a Redis Cluster (:func:`connect` with ``cluster=True``) the client is redis-py's
``RedisCluster`` and its pipelines are redis-py's cluster pipelines. What differs between the
two is kept here, so the store's code is one: :data:`AsyncRedis` and :data:`Pipeline` name
either; :func:`queue_get_many` and :func:`queue_set_many` send one ``MGET``/``MSET`` per hash
slot on a cluster (which refuses them across slots, and its pipelines refuse them outright)
and one in all on a single node; :func:`queue_wait_for_replicas` sends ``WAIT`` to every
master a pipeline wrote to; and :func:`execute_then` keeps two steps in order, which a single
node does by itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias, cast
from urllib.parse import urlparse

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as RedisPipeline
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import ClusterPipeline
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterPipeline as SyncClusterPipeline
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, NoScriptError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: What :func:`connect` answers: redis-py's asyncio client (single node) or its cluster client.
AsyncRedis: TypeAlias = aioredis.Redis | AsyncRedisCluster
#: A pipeline of either: redis-py's or redis-py's cluster pipeline. Count what is queued on
#: one with ``len(pipe)`` (a cluster pipeline has no command stack).
Pipeline: TypeAlias = RedisPipeline | ClusterPipeline
#: What :func:`connect_sync` answers (command-line tools, the recommender process).
SyncRedis: TypeAlias = redis.Redis | SyncRedisCluster

#: What a round trip raises while Redis is away: refused, reset or closed connections and
#: ``LOADING`` replies (redis-py's ``ConnectionError`` family) and its socket timeouts; on a
#: cluster also ``CLUSTERDOWN`` and a slot no reachable master serves (once the cluster
#: client's own retries, :data:`CLUSTER_RETRY_S`, are spent).
STORE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, ClusterDownError, SlotNotCoveredError)

#: How long a cluster client keeps retrying a command whose master is unreachable: long
#: enough for a replica to be promoted (the cluster node timeout, 15 s by default, then an
#: election), so a failover costs the worker a slow batch instead of an error.
CLUSTER_RETRY_S = 30.0


def connect(url: str, *, cluster: bool = False,
            pool_class: type[ConnectionPool] = ConnectionPool, **options: Any) -> AsyncRedis:
    """An asyncio Redis client for ``url`` (``redis://``, ``rediss://`` or ``unix://``) that
    owns its pool (closing the client closes it). ``pool_class`` and ``options`` go to the
    pool, e.g. ``BlockingConnectionPool`` with ``max_connections`` and ``timeout`` to make
    requests wait for a busy pool rather than fail.

    ``socket_timeout=None`` drops redis-py's per-reply timeout (it wraps every reply read in
    an ``asyncio.timeout``); a caller that does so bounds its work with a deadline of its own
    (the worker: one per batch).

    With ``cluster``, ``url`` names any node of a Redis Cluster, or several, comma-separated,
    and the client is redis-py's ``RedisCluster`` (see :func:`connect_cluster`)."""
    if cluster:
        return connect_cluster(url, **options)
    return aioredis.Redis.from_pool(pool_class.from_url(url, **options))


def _cluster_retry() -> Retry:
    backoff = ExponentialWithJitterBackoff(base=0.05, cap=0.5)
    # Full jitter: about half the cap per attempt once it is reached.
    return Retry(backoff, retries=int(CLUSTER_RETRY_S / 0.25))


def _cluster_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """The first URL of a comma-separated list, and the (host, port) of the others."""
    first, *others = [part.strip() for part in url.split(",") if part.strip()]
    nodes = []
    for other in others:
        parsed = urlparse(other if "://" in other else f"redis://{other}")
        nodes.append((parsed.hostname or "127.0.0.1", parsed.port or 6379))
    return first, nodes


def connect_cluster(url: str, *, max_connections: int | None = None, timeout: float | None = None,
                    **options: Any) -> AsyncRedisCluster:
    """redis-py's asyncio cluster client for the cluster ``url`` names a node of, or several
    (comma-separated: the client starts from whichever answers, so it starts while one of
    them is down; TLS and password come from the first).

    It keeps a pool per node of at most ``max_connections`` (a busy pool raises
    ``MaxConnectionsError`` rather than wait ``timeout``, which only a single node's blocking
    pool can), and retries a command whose node is unreachable for about
    :data:`CLUSTER_RETRY_S`, refreshing the slot map in between, so it finds a promoted
    replica."""
    del timeout  # no blocking pool per node in redis-py's cluster client
    if max_connections is not None:
        options["max_connections"] = max_connections
    first, others = _cluster_nodes(url)
    if others:
        options["startup_nodes"] = [AsyncClusterNode(host, port) for host, port in others]
    return AsyncRedisCluster.from_url(first, retry=_cluster_retry(), **options)


def connect_sync(url: str, *, cluster: bool = False, **options: Any) -> SyncRedis:
    """A synchronous client for command-line tools and the recommender process: redis-py's
    ``Redis``, or its ``RedisCluster`` with ``cluster`` (``url`` as for
    :func:`connect_cluster`)."""
    if cluster:
        from redis.cluster import ClusterNode
        from redis.retry import Retry as SyncRetry

        first, others = _cluster_nodes(url)
        if others:
            options["startup_nodes"] = [ClusterNode(host, port) for host, port in others]
        return SyncRedisCluster.from_url(first, retry=SyncRetry(
            ExponentialWithJitterBackoff(base=0.05, cap=0.5),
            retries=int(CLUSTER_RETRY_S / 0.25)), **options)
    return redis.Redis.from_url(url, **options)


def _slot_groups(pipe: Any, keys: Sequence[Any]) -> list[list[int]]:
    """The positions of ``keys`` grouped by hash slot on a cluster pipeline; all in one group
    on a single node's."""
    if not isinstance(pipe, ClusterPipeline | SyncClusterPipeline):
        return [list(range(len(keys)))]
    groups: dict[int, list[int]] = {}
    for position, key in enumerate(keys):
        encoded = key.encode() if isinstance(key, str) else key
        groups.setdefault(key_slot(encoded), []).append(position)
    return list(groups.values())


def queue_get_many(pipe: Any, keys: Sequence[Any]) -> Callable[[Sequence[Any]], list[Any]]:
    """Queue the reads of ``keys`` on ``pipe``: one ``MGET`` in all on a single node, one per
    hash slot on a cluster. The function answered picks their values, in the order of
    ``keys``, out of the pipeline's replies."""
    start = len(pipe)
    groups = _slot_groups(pipe, keys) if keys else []
    for group in groups:
        pipe.execute_command("MGET", *[keys[position] for position in group])

    def read(replies: Sequence[Any]) -> list[Any]:
        values: list[Any] = [None] * len(keys)
        for group, reply in zip(groups, replies[start:start + len(groups)], strict=True):
            for position, value in zip(group, reply, strict=True):
                values[position] = value
        return values

    return read


def queue_set_many(pipe: Any, mapping: Mapping[Any, Any]) -> None:
    """Queue ``MSET`` of ``mapping`` on ``pipe``: one in all on a single node, one per hash
    slot on a cluster (not atomic across slots; nothing here needs it to be)."""
    keys = list(mapping)
    for group in _slot_groups(pipe, keys) if keys else []:
        pairs: list[Any] = []
        for position in group:
            pairs += [keys[position], mapping[keys[position]]]
        pipe.execute_command("MSET", *pairs)


def queue_wait_for_replicas(pipe: Any, replicas: int, timeout_ms: int) -> None:
    """Queue ``WAIT replicas timeout_ms`` behind what ``pipe`` writes: on a cluster to every
    master, each on the connection that carried this pipeline's writes to it, so it returns
    once they are on ``replicas`` replicas (or the timeout passed). Nothing when ``replicas``
    is 0. Its reply: the replicas that acknowledged, summed over the masters."""
    if replicas <= 0:
        return
    if isinstance(pipe, ClusterPipeline):
        pipe.execute_command("WAIT", replicas, timeout_ms,
                             target_nodes=AsyncRedisCluster.PRIMARIES)
    else:
        pipe.execute_command("WAIT", replicas, timeout_ms)


def is_cluster(redis: AsyncRedis) -> bool:
    """Whether ``redis`` is a cluster client (each master runs its share of a pipeline at
    once, so an order between slots takes a round trip of its own)."""
    return isinstance(redis, AsyncRedisCluster)


def master_count(redis: AsyncRedis) -> int:
    """How many masters the client writes to: the cluster's (as it last saw them), or 1."""
    if isinstance(redis, AsyncRedisCluster):
        return max(1, len(redis.get_primaries()))
    return 1


async def execute_then(redis: AsyncRedis, first: Callable[[Any], None],
                       then: Callable[[Any], None]) -> list[Any]:
    """Run the commands ``first`` queues, then those ``then`` queues, none of ``then``'s
    before all of ``first``'s have run; answer ``first``'s replies (positions taken with
    ``len(pipe)`` in ``first`` hold in them).

    A single node runs a connection's commands in turn, so both share one round trip there.
    A cluster runs each master's share of a pipeline at once, and a client that dies part
    way may have sent some masters theirs and not others: there ``then`` is a round trip of
    its own, sent once ``first``'s has answered."""
    async with redis.pipeline(transaction=False) as pipe:
        first(pipe)
        count = len(pipe)
        if not isinstance(redis, AsyncRedisCluster):
            then(pipe)
        replies = cast(list[Any], await pipe.execute())
    if isinstance(redis, AsyncRedisCluster):
        async with redis.pipeline(transaction=False) as pipe:
            then(pipe)
            await pipe.execute()
    return replies[:count]


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

    def queue(self, pipe: Any, keys: Sequence[Any], args: Sequence[Any] = ()) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)


async def execute_pipeline(redis: AsyncRedis, fill: Callable[[Any], None],
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
