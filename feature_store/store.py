"""The feature store's write side: atomic, idempotent feature updates in Redis.

One Lua script per event applies every change of that event to one customer atomically and
at most once (the event id is recorded in the same script), and a batch of events goes to
Redis as one pipeline: one round trip per micro-batch, never one per event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from feature_store.client import PipelineScript, execute_pipeline
from feature_store.keys import (
    METRICS_KEY,
    TENANTS_KEY,
    CustomerKeys,
    alias_key,
    anonymous_profile_id,
    customers_key,
    erasure_receipt_key,
    progress_key,
    ranking_key,
    scoring_index_key,
    segment_members_key,
    segments_key,
    started_key,
    watermark_key,
)
from feature_store.replies import text
from feature_store.scores import (
    DueCustomer,
    ScoreRecord,
    chunk_for,
    clv_percentile,
    due_customers,
    queue_clv_percentile,
    queue_count_due,
    queue_due,
    queue_due_profiles,
    queue_score_writes,
)
from feature_store.updates import update_for
from schemas.events import ClickEvent, PurchaseEvent, TicketEvent

log = logging.getLogger(__name__)

AnyEvent = ClickEvent | PurchaseEvent | TicketEvent

#: The per-customer keys both scripts take, in order (the last one is the erasure tombstone).
_SCRIPT_KEY_SUFFIXES = ("profile", "events", "sessions", "categories", "recent", "tickets",
                        "bought", "orders", "days", "merged", "erased")
#: The visitor's keys ``visitor_snapshot.lua`` reads, in its order: those a merge copies.
_SNAPSHOT_KEY_SUFFIXES = _SCRIPT_KEY_SUFFIXES[:9]

#: Reads a caller wants of the customers a batch updated, as the batch left them: queue them
#: on the pipeline given, for the (tenant, profile id) pairs given, and answer the function
#: that takes the pipeline's replies.
QueueReads = Callable[[Pipeline, Sequence[tuple[str, str]]], Callable[[list[Any]], None]]


def _pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    """(field, value) or (member, score) pairs from a flat reply."""
    return list(zip(flat[::2], flat[1::2], strict=True))


def _script(name: str) -> str:
    """A Lua script with the shared helpers of ``lua/common.lua`` in front of it."""
    lua = resources.files("feature_store").joinpath("lua")
    return lua.joinpath("common.lua").read_text() + lua.joinpath(name).read_text()


@dataclass(frozen=True)
class StoreLimits:
    """How much per-customer history the store keeps."""

    max_event_ids: int = 10_000
    recent_products: int = 20
    recent_orders: int = 50


@dataclass(frozen=True)
class Applied:
    """What happened to one event: ``ok``, ``duplicate`` or ``erased``, and for whom."""

    outcome: str
    tenant: str
    profile_id: str


@dataclass(frozen=True)
class Progress:
    """How far a partition's batches got: ``done``, the last offset of a batch recorded as
    finished; ``started``, the last offset of a batch whose events went to Redis to be
    applied (-1: none). An offset above ``done`` and at most ``started`` may have been
    processed by a batch that never finished (a crash, a failed round trip): its message is
    a redelivery. One above ``started`` was never processed, so an event id it carries that
    the store knows already was sent twice by the shop."""

    done: int = -1
    started: int = -1

    def redelivers(self, offset: int) -> bool:
        """Whether a message at ``offset`` (above ``done``) may have been processed before.

        >>> Progress(done=9, started=14).redelivers(12), Progress(9, 14).redelivers(15)
        (True, False)
        """
        return offset <= self.started


class ProgressLost(RuntimeError):
    """Redis holds a partition's started mark below the one the caller last saw: it lost its
    last writes (restarted from an append-only file missing its last second, a replica
    promoted behind its primary). The batch must be done again from what Redis knows."""


def profile_id_for(event: AnyEvent, aliases: dict[tuple[str, str], str],
                   visitors_own: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset()
                   ) -> str:
    """The profile an event updates: its customer, the visitor's customer, or the visitor.

    An event in ``visitors_own`` (tenant, event id) stays the visitor's even when the visitor
    points at a customer already (see :meth:`FeatureStore.resolve_aliases`)."""
    if event.customer_id:
        return event.customer_id
    assert event.anonymous_id is not None
    visitor = anonymous_profile_id(event.anonymous_id)
    if (event.tenant, event.event_id) in visitors_own:
        return visitor
    return aliases.get((event.tenant, event.anonymous_id)) or visitor


def _check_marks(started: Mapping[tuple[str, int], int], before: Sequence[Any],
                 known: Mapping[tuple[str, int], int]) -> None:
    """Raise :class:`ProgressLost` if Redis held a started mark below the known one.

    >>> _check_marks({("t", 0): 9}, [b"4"], {("t", 0): 4})
    >>> _check_marks({("t", 0): 9}, [None], {("t", 0): 4})
    Traceback (most recent call last):
    ...
    feature_store.store.ProgressLost: Redis lost writes: t/0 started at -1, last seen at 4
    """
    behind = [(topic, partition, -1 if mark is None else int(mark), known[(topic, partition)])
              for (topic, partition), mark in zip(started, before, strict=True)
              if (-1 if mark is None else int(mark)) < known.get((topic, partition), -1)]
    if behind:
        raise ProgressLost("Redis lost writes: " + ", ".join(
            f"{topic}/{partition} started at {mark}, last seen at {seen}"
            for topic, partition, mark, seen in behind))


class FeatureStore:
    """Apply events to customer features; the agents' only way to write customer state."""

    def __init__(self, *, redis: aioredis.Redis, limits: StoreLimits | None = None) -> None:
        self.redis = redis
        self.limits = limits or StoreLimits()
        self._apply = PipelineScript(_script("apply_event.lua"))
        self._merge = PipelineScript(_script("merge_profile.lua"))
        self._snapshot = PipelineScript(_script("visitor_snapshot.lua"))

    @classmethod
    def from_url(cls, url: str, *, limits: StoreLimits | None = None) -> FeatureStore:
        from feature_store.client import connect

        return cls(redis=connect(url), limits=limits)

    async def close(self) -> None:
        await self.redis.aclose()

    # -- events ------------------------------------------------------------------------------

    async def resolve_aliases(self, events: Iterable[AnyEvent]
                              ) -> tuple[dict[tuple[str, str], str], set[tuple[str, str]]]:
        """Which anonymous-only events belong to a customer already: the customer of each
        stitched visitor, and the (tenant, event id) of the events the visitor's own profile
        holds already (one round trip).

        Those stay the visitor's: they reach the customer through the merge, or did already.
        A batch cut short after the visitor was pointed at the customer but before the merge
        copied the visitor (a crash, Redis gone) is applied again with the alias in place;
        its visitor events, applied to the customer as well, would count twice.
        """
        visitor_events: list[tuple[str, str, str]] = [  # tenant, anonymous id, event id
            (e.tenant, e.anonymous_id, e.event_id) for e in events
            if e.customer_id is None and e.anonymous_id is not None]
        wanted = sorted({(tenant, anonymous_id) for tenant, anonymous_id, _ in visitor_events})
        if not wanted:
            return {}, set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for tenant, anonymous_id in wanted:
                pipe.get(alias_key(tenant, anonymous_id))
            for tenant, anonymous_id, event_id in visitor_events:
                visitor = CustomerKeys(tenant, anonymous_profile_id(anonymous_id))
                pipe.zscore(visitor.key("events"), event_id)
            found = await pipe.execute()
        aliases = {pair: value.decode()
                   for pair, value in zip(wanted, found[:len(wanted)], strict=True) if value}
        visitors_own = {(tenant, event_id) for (tenant, anonymous_id, event_id), held
                        in zip(visitor_events, found[len(wanted):], strict=True)
                        if held is not None and (tenant, anonymous_id) in aliases}
        return aliases, visitors_own

    async def apply_events(self, events: Sequence[AnyEvent], *,
                           reads: QueueReads | None = None,
                           started: Mapping[tuple[str, int], int] | None = None,
                           known_started: Mapping[tuple[str, int], int] | None = None
                           ) -> list[Applied]:
        """Apply a micro-batch; each event at most once, each atomically. Stitches visitors.

        ``reads`` of the batch's customers ride on the round trip that applies it, queued
        after the updates, so they see them (Redis runs a connection's commands in turn). A
        stitch changes the customer and deletes the visitor after that round trip, so both
        are read again in its last one. ``started`` (the batch's last offset per partition)
        is recorded first in that round trip (see :class:`Progress`). ``known_started`` are
        the marks the caller last saw of those partitions: if Redis answers an older one,
        :class:`ProgressLost` is raised after the round trip (its writes are idempotent).
        """
        aliases, visitors_own = await self.resolve_aliases(events)
        now_ms = str(int(time.time() * 1000))
        limits = self.limits
        targets = []
        for event in events:
            profile_id = profile_id_for(event, aliases, visitors_own)
            stitch = event.anonymous_id if event.customer_id and event.anonymous_id else ""
            targets.append((event, profile_id, stitch))

        # The customer index (by last event time) goes on the same pipeline: duplicates are
        # indexed too, so after a crash between applying and indexing the redelivered
        # events still catch it up; and it is indexed before a merge below removes a
        # stitched visitor from it for good.
        latest: dict[tuple[str, str], int] = {}
        for event, profile_id, _ in targets:
            key = (event.tenant, profile_id)
            latest[key] = max(latest.get(key, 0), event.occurred_at_ms)

        def fill(pipe: Pipeline) -> None:
            # Before any event: Redis runs a connection's commands in turn, so whatever of
            # the batch was applied, its offsets count as started.
            for (topic, partition), offset in (started or {}).items():
                pipe.set(started_key(topic, partition), offset, get=known_started is not None)
            for event, profile_id, stitch in targets:
                keys = CustomerKeys(event.tenant, profile_id)
                self._apply.queue(
                    pipe,
                    keys=[keys.key(suffix) for suffix in _SCRIPT_KEY_SUFFIXES],
                    args=[event.event_id, event.occurred_at_ms, orjson.dumps(update_for(event)),
                          limits.max_event_ids, limits.recent_products, limits.recent_orders,
                          profile_id, event.tenant, stitch, now_ms],
                )
            for (tenant, profile_id), at_ms in latest.items():
                pipe.zadd(customers_key(tenant), {profile_id: at_ms}, gt=True)
            for tenant in {tenant for tenant, _ in latest}:
                pipe.sadd(TENANTS_KEY, tenant)
            if reads is not None:
                taking.append(reads(pipe, list(latest)))

        # Safe to repeat after NOSCRIPT: the script applies each event at most once, ZADD
        # GT is idempotent, and reads are reads (the last fill's are taken).
        taking: list[Callable[[list[Any]], None]] = []
        replies = await execute_pipeline(self.redis, fill, [self._apply])
        if taking:
            taking[-1](replies)
        marks = len(started or ())
        if known_started is not None:
            _check_marks(started or {}, replies[:marks], known_started)
        replies = replies[marks:marks + len(targets)]
        results = [Applied(reply[0].decode(), event.tenant, profile_id)
                   for (event, profile_id, _), reply in zip(targets, replies, strict=True)]
        await self._unindex_erased(results)
        merged: set[tuple[str, str, str]] = set()
        for (event, profile_id, stitch), reply in zip(targets, replies, strict=True):
            if int(reply[1]) and (event.tenant, stitch, profile_id) not in merged:
                await self.merge_anonymous(event.tenant, stitch, profile_id, reads=reads)
                merged.add((event.tenant, stitch, profile_id))
        return results

    async def _unindex_erased(self, results: list[Applied]) -> None:
        """Take erased customers, indexed with the batch, out of the index again (rare: an
        event of a customer erased within the blocking period)."""
        kept = {(r.tenant, r.profile_id) for r in results if r.outcome != "erased"}
        erased = {(r.tenant, r.profile_id) for r in results if r.outcome == "erased"} - kept
        if erased:
            async with self.redis.pipeline(transaction=False) as pipe:
                for tenant, profile_id in erased:
                    pipe.zrem(customers_key(tenant), profile_id)
                await pipe.execute()

    async def merge_anonymous(self, tenant: str, anonymous_id: str, customer_id: str, *,
                              reads: QueueReads | None = None) -> str:
        """Fold a visitor's history into a customer once, and point the visitor at them.

        The steps touch two hash slots, so they cannot be one transaction on a cluster;
        instead each is idempotent and the last one records completion (``<anon>|done`` in
        the customer's ``merged`` set). A crash anywhere in between is resumed by the
        redelivered stitching event: alias (set-if-absent), copy (guarded by the merged
        set), delete the visitor's keys, mark done. Three round trips: the alias with the
        visitor's snapshot (read atomically by a script in the visitor's slot), the copy
        (a script in the customer's slot), the clean-up, which also carries ``reads`` of the
        customer and the visitor as the merge left them.
        """
        visitor = CustomerKeys(tenant, anonymous_profile_id(anonymous_id))

        def alias_then_snapshot(pipe: Pipeline) -> None:
            pipe.set(alias_key(tenant, anonymous_id), customer_id, nx=True)
            self._snapshot.queue(pipe, keys=[visitor.key(suffix)
                                             for suffix in _SNAPSHOT_KEY_SUFFIXES])

        # Safe to repeat after NOSCRIPT: SET NX and a read.
        _, replies = await execute_pipeline(self.redis, alias_then_snapshot, [self._snapshot])
        profile, events, sessions, categories, recent, tickets, bought, orders, days = replies
        snapshot = {
            "profile": {text(field): text(value) for field, value in _pairs(profile)},
            "events": [[text(member), int(float(score))] for member, score in _pairs(events)],
            "sessions": sorted(text(member) for member in sessions),
            "categories": [[text(member), float(score)] for member, score in _pairs(categories)],
            "recent": [[text(member), int(float(score))] for member, score in _pairs(recent)],
            "tickets": {text(field): text(value) for field, value in _pairs(tickets)},
            "bought": sorted(text(member) for member in bought),
            "orders": [[text(member), int(float(score))] for member, score in _pairs(orders)],
            "days": sorted(int(member) for member in days),
        }
        customer = CustomerKeys(tenant, customer_id)

        def merge(pipe: Pipeline) -> None:
            self._merge.queue(
                pipe, keys=[customer.key(suffix) for suffix in _SCRIPT_KEY_SUFFIXES],
                args=[anonymous_id, orjson.dumps(snapshot), self.limits.max_event_ids,
                      self.limits.recent_products, self.limits.recent_orders, customer_id,
                      tenant])

        # Its own round trip: a failed merge must raise before the visitor is deleted below.
        # Safe to repeat after NOSCRIPT (the script did not run).
        (outcome,) = await execute_pipeline(self.redis, merge, [self._merge])
        # One round trip, in this order: Redis runs a connection's commands in turn, so the
        # visitor is deleted and unindexed whenever completion is recorded.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(*[visitor.key(suffix) for suffix in _SCRIPT_KEY_SUFFIXES])
            pipe.zrem(customers_key(tenant), visitor.customer_id)
            pipe.sadd(customer.key("merged"), f"{anonymous_id}|done")
            take = reads(pipe, [(tenant, customer_id), (tenant, visitor.customer_id)]
                         ) if reads is not None else None
            replies = await pipe.execute()
        if take is not None:
            take(replies)
        log.info("stitched visitor %s into customer %s (%s)", anonymous_id, customer_id,
                 outcome.decode() if isinstance(outcome, bytes) else outcome)
        return outcome.decode() if isinstance(outcome, bytes) else str(outcome)

    # -- partition progress, watermarks, metrics ---------------------------------------------

    async def progress(self, partitions: Iterable[tuple[str, int]]
                       ) -> dict[tuple[str, int], Progress]:
        """How far each (topic, partition) got (one round trip)."""
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        values = await self.redis.mget([key for topic, partition in wanted for key in (
            progress_key(topic, partition), started_key(topic, partition))])
        done, started = values[::2], values[1::2]
        return {tp: Progress(done=-1 if d is None else int(d),
                             started=-1 if s is None else int(s))
                for tp, d, s in zip(wanted, done, started, strict=True)}

    async def commit_batch(
        self,
        *,
        progress: dict[tuple[str, int], int],
        watermarks: dict[tuple[str, int], int],
        outcomes: dict[tuple[str, str], int],
        before: Callable[[Pipeline], None] | None = None,
    ) -> None:
        """Record a finished batch: offsets reached, watermarks, outcome counters; after
        the writes ``before`` queues, in the same round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            if before is not None:
                before(pipe)
            for (topic, partition), offset in progress.items():
                pipe.set(progress_key(topic, partition), offset)
            for (topic, partition), watermark in watermarks.items():
                pipe.set(watermark_key(topic, partition), watermark)
            for (topic, outcome), count in outcomes.items():
                pipe.hincrby(METRICS_KEY, f"{topic}|{outcome}", count)
            await pipe.execute()

    async def watermarks(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        wanted = sorted(set(partitions))
        values = await self.redis.mget([watermark_key(t, p) for t, p in wanted]) if wanted else []
        return {tp: int(v) for tp, v in zip(wanted, values, strict=True) if v is not None}

    # -- scores ------------------------------------------------------------------------------

    async def write_scores(self, records: Sequence[ScoreRecord], *,
                           clv_percentiles: bool = False
                           ) -> dict[tuple[str, str], tuple[float | None, int]]:
        """Write scores (see :mod:`feature_store.scores`) in one round trip; with
        ``clv_percentiles``, answer each served CLV's percentile among the tenant's ranked
        customers, and how many there are, as the writes left them."""
        updated_at_ms = int(time.time() * 1000)
        asked: list[ScoreRecord] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for record in records:
                queue_score_writes(pipe, record, updated_at_ms)
            start = len(pipe.command_stack)
            if clv_percentiles:
                for record in records:
                    if record.clv is not None:
                        queue_clv_percentile(pipe, record.tenant, record.clv)
                        asked.append(record)
            replies = (await pipe.execute())[start:]
        return {(record.tenant, record.customer_id): clv_percentile(below, population)
                for record, below, population in zip(asked, replies[::2], replies[1::2],
                                                      strict=True)}

    async def publish_segments(self, tenant: str,
                               segments: Sequence[tuple[int, str, dict[str, float]]]) -> None:
        """The tenant's segments for the API, given as (id, label, centroid), each with its
        size: the customers now in its set."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for segment, _, _ in segments:
                pipe.scard(segment_members_key(tenant, segment))
            sizes = await pipe.execute()
        records = {
            str(segment): orjson.dumps({"segment": segment, "label": label, "size": int(size),
                                        "centroid": centroid})
            for (segment, label, centroid), size in zip(segments, sizes, strict=True)}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(segments_key(tenant))
            if records:
                pipe.hset(segments_key(tenant), mapping=records)  # type: ignore[arg-type]
            await pipe.execute()

    async def due_for_rescoring(self, partitions: Iterable[int], watermark_ms: int, *,
                                interval_s: float, target_lag_s: float, smallest: int = 50,
                                largest: int = 5000) -> list[DueCustomer]:
        """Customers of ``partitions`` scored before the watermark, those scored longest ago
        first, as many per partition as keep every one within ``target_lag_s`` of it when
        asked every ``interval_s`` (see :func:`~feature_store.scores.chunk_for`)."""
        partitions = sorted(set(partitions))
        tenants = sorted(text(t) for t in await self.redis.smembers(TENANTS_KEY))  # type: ignore[misc]
        if not tenants or not partitions:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            pairs = queue_count_due(pipe, tenants, partitions, watermark_ms)
            counts = await pipe.execute()
        wanted = {pair: chunk_for(int(total), int(due), interval_s=interval_s,
                                  target_lag_s=target_lag_s, smallest=smallest, largest=largest)
                  for pair, total, due in zip(pairs, counts[::2], counts[1::2], strict=True)
                  if due}
        if not wanted:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            pairs = queue_due(pipe, wanted, watermark_ms)
            members = await pipe.execute()
        customers = [(tenant, text(member), partition)
                     for (tenant, partition), found in zip(pairs, members, strict=True)
                     for member in found]
        async with self.redis.pipeline(transaction=False) as pipe:
            queue_due_profiles(pipe, customers)
            rows = await pipe.execute()
        return due_customers(customers, rows)

    # -- erasure -------------------------------------------------------------------------------

    async def erase(
        self, *, tenant: str, customer_id: str, block_seconds: float, receipt_id: str
    ) -> int:
        """Delete every key of a customer and block their later events for a while."""
        keys = CustomerKeys(tenant, customer_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(keys.key("merged"))
            pipe.hmget(keys.profile, ["segment", "scoring_partition"])
            members, (segment, partition) = await pipe.execute()
        merged = {text(member).split("|")[0] for member in members}
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(*keys.all())
            if segment is not None:
                pipe.srem(segment_members_key(tenant, int(segment)), customer_id)
            if partition is not None:
                pipe.zrem(scoring_index_key(tenant, int(partition)), customer_id)
            for anonymous_id in sorted(merged):
                pipe.delete(alias_key(tenant, anonymous_id))
            if block_seconds > 0:
                pipe.set(keys.erased, receipt_id, ex=max(1, int(block_seconds)))
            pipe.zrem(customers_key(tenant), customer_id)
            for score in ("churn", "clv"):
                pipe.zrem(ranking_key(tenant, score), customer_id)
            pipe.hset(erasure_receipt_key(receipt_id), mapping={
                "status": "done", "tenant": tenant, "customer_id": customer_id,
                "completed_at": str(int(time.time() * 1000)),
            })
            pipe.expire(erasure_receipt_key(receipt_id), 90 * 86_400)
            replies = await pipe.execute()
        deleted = int(replies[0])
        log.info("erased customer %s/%s (%d keys), receipt %s", tenant, customer_id, deleted,
                 receipt_id)
        return deleted
