"""The feature store: every Redis key and call the worker makes, behind a few methods.

A batch makes two round trips in the common case (``agents/batch.py``):

* :meth:`FeatureStore.apply` applies the events, each atomically and at most once (one Lua
  script per customer records the event ids and every feature change), and reads back, in
  the same round trip, what the models and the alert rules need: each customer as the batch
  left them (profile, purchases, rule state), each tenant's CLV ranking, the cart timers
  due by the batch's watermarks. Stitching a visitor, and the owners of due carts the batch
  did not touch, add round trips of their own when a batch has them.
* :meth:`FeatureStore.commit` writes what the batch decided: scores, rule state, cart
  timers, the alerts' feed, progress, watermarks and counters.

Every write is idempotent, so a batch retried after a crash or a failed round trip changes
nothing twice (see :mod:`agents.outage`).

On a Redis Cluster (:func:`~feature_store.client.connect` with ``cluster``) every script
takes the keys of one hash slot (a customer's, a ranking's, the feed's), multi-key reads and
writes go one per slot (:func:`~feature_store.client.queue_get_many`), and where an order
between keys of different slots matters (``started`` before the events, progress after the
rest of a commit, an erasure's receipt after the deletes) it is a round trip of its own
there (:func:`~feature_store.client.execute_then`): a cluster runs each master's share of a
pipeline at once. With ``wait_replicas`` the writes a batch's progress depends on are on
that many replicas of every master before progress is recorded (``WAIT``).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from feature_store import segment_fits
from feature_store.batch import (
    AppliedBatch,
    AppliedEvent,
    CartSweep,
    CartTimer,
    Commit,
    Partition,
    Position,
    Progress,
    check_marks,
)
from feature_store.client import (
    AsyncRedis,
    Pipeline,
    execute_pipeline,
    execute_then,
    is_cluster,
    master_count,
    queue_get_many,
    queue_set_many,
    queue_wait_for_replicas,
)
from feature_store.customers import (
    APPLY_SCRIPT,
    Customer,
    CustomerKey,
    customer_from,
    load_customers,
    queue_apply,
)
from feature_store.feed import KEPT_UNTIL_FED, CarriedOver, queue_feed, queue_unsent
from feature_store.forecasts import queue_forecasts
from feature_store.keys import (
    DRIFT_ALERTED_KEY,
    METRICS_KEY,
    MODELS_HISTORY_KEY,
    MODELS_KEY,
    SUPPRESSED_KEY,
    TENANTS_KEY,
    THROUGHPUT_KEY,
    UNSENT_ALERTS_KEY,
    CustomerKeys,
    alert_state_key,
    alias_key,
    anonymous_profile_id,
    cart_timers_key,
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
from feature_store.ranking import SKETCH_SCRIPT, queue_sketch, sketch_from
from feature_store.replies import text
from feature_store.rule_state import CustomerAlertState
from feature_store.scores import (
    DueCustomer,
    ScoreRecord,
    chunk_for,
    due_customers,
    queue_count_due,
    queue_due,
    queue_due_profiles,
    queue_score_writes,
)
from feature_store.stitching import merge_visitors, profile_id_for, resolve_aliases
from feature_store.tickets import owner_keys, queue_ticket_writes
from feature_store.updates import update_for
from schemas.events import AnyEvent
from schemas.records import Alert

log = logging.getLogger(__name__)

#: At most this many due carts per partition and batch (the rest fire with the next).
CARTS_PER_SWEEP = 1_000
#: How long a batch waits for its writes to reach the replicas (``WAIT``), when asked.
REPLICA_WAIT_MS = 100
#: How long batches go on without waiting after a ``WAIT`` came back short (a master without
#: its replica, e.g. just after a failover): then they try again.
REPLICA_WAIT_PAUSE_S = 10.0


@dataclass(frozen=True)
class ModelTelemetry:
    """One model as ``/v1/models`` and the dashboard show it: scalar ``metrics`` (charted)
    and every metric in ``details``, JSON-ready."""

    name: str
    version: str
    example_count: int
    metrics: dict[str, float | None]
    details: dict[str, Any]


@dataclass(frozen=True)
class StoreLimits:
    """How much per-customer history the store keeps."""

    max_event_ids: int = 10_000
    recent_products: int = 20
    recent_orders: int = 50

    def args(self) -> tuple[int, int, int]:
        return self.max_event_ids, self.recent_products, self.recent_orders


def _cart_member(timer: CartTimer) -> bytes:
    return orjson.dumps([timer.tenant, timer.customer_id, timer.event_id])


def _queue_open_timers(pipe: Any, timers: Sequence[CartTimer]) -> None:
    for timer in timers:
        pipe.zadd(cart_timers_key(timer.topic, timer.partition),
                  {_cart_member(timer): timer.deadline_ms})


def _no_check(replies: list[Any]) -> None:
    """Nothing to check."""


class FeatureStore:
    """Customer state in Redis: the worker's only way to read or write it.

    With ``wait_replicas``, the round trips whose writes a batch's progress depends on (the
    events applied, a visitor merged, the commit's writes before its progress) end with
    ``WAIT`` on every master they wrote to, so progress (and the Kafka offsets after it) is
    recorded only once they are on that many replicas: a master lost to a failover then
    loses none of them (Redis replicates asynchronously). A master left without a replica
    (after a failover, until the old master is back as its replica) would hold every batch
    for the whole wait: when a ``WAIT`` comes back short, batches go on without it for
    :data:`REPLICA_WAIT_PAUSE_S` (logged), then try again.
    """

    def __init__(self, *, redis: AsyncRedis, limits: StoreLimits | None = None,
                 wait_replicas: int = 0) -> None:
        self.redis = redis
        self.limits = limits or StoreLimits()
        self.wait_replicas = wait_replicas
        self._no_wait_until = 0.0

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, limits: StoreLimits | None = None,
                 wait_replicas: int = 0) -> FeatureStore:
        from feature_store.client import connect

        return cls(redis=connect(url, cluster=cluster), limits=limits,
                   wait_replicas=wait_replicas)

    def _wait_for_replicas(self, pipe: Pipeline) -> Callable[[list[Any]], None]:
        """Queue ``WAIT`` when asked to (and not paused); the function answered checks its
        reply among the pipeline's replies."""
        if not self.wait_replicas or time.monotonic() < self._no_wait_until:
            return _no_check
        position, expected = len(pipe), self.wait_replicas * master_count(self.redis)
        queue_wait_for_replicas(pipe, self.wait_replicas, REPLICA_WAIT_MS)

        def check(replies: list[Any]) -> None:
            acknowledged = int(replies[position])
            if acknowledged < expected:
                self._no_wait_until = time.monotonic() + REPLICA_WAIT_PAUSE_S
                log.warning("%d of %d replica acknowledgements within %d ms (a master without "
                            "its replica?): batches go on without WAIT for %.0f s",
                            acknowledged, expected, REPLICA_WAIT_MS, REPLICA_WAIT_PAUSE_S)

        return check

    async def close(self) -> None:
        await self.redis.aclose()

    # -- a batch ---------------------------------------------------------------------------

    async def positions(self, partitions: Iterable[Partition]) -> dict[Partition, Position]:
        """How far each (topic, partition) got, and its watermark (one round trip)."""
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            read = queue_get_many(pipe, [key for topic, partition in wanted for key in (
                progress_key(topic, partition), started_key(topic, partition),
                watermark_key(topic, partition))])
            values = read(await pipe.execute())
        return {tp: Position(Progress(done=-1 if done is None else int(done),
                                      started=-1 if started is None else int(started)),
                             None if mark is None else int(mark))
                for tp, done, started, mark in zip(wanted, values[::3], values[1::3],
                                                   values[2::3], strict=True)}

    async def apply(self, events: Sequence[AnyEvent], *, started: Mapping[Partition, int],
                    carts: CartSweep, known_started: Mapping[Partition, int] | None = None
                    ) -> AppliedBatch:
        """Apply a micro-batch (each event at most once, each customer's atomically),
        stitch visitors, and read back what the models and rules need (see the module).

        ``started`` (the batch's last offset per partition) is recorded in front of the
        events (see :class:`~feature_store.batch.Progress`): Redis runs a connection's
        commands in turn, so whatever of the batch was applied counts as started. On a
        cluster the ``started`` keys live on other masters than the customers: they are a
        round trip of their own there, sent first.
        ``known_started`` are the marks the caller last saw of those partitions: if Redis
        answers an older one (it lost its last writes), :class:`ProgressLost` is raised after
        the round trip (its writes are idempotent, so the batch may be done again).
        """
        if not events and not carts.due_by and not carts.partitions:
            return AppliedBatch(events=[], customers={})
        if not events:
            started = {}  # nothing of this batch goes to Redis to be applied
        aliases, visitors_own = await resolve_aliases(self.redis, events)
        targets = [profile_id_for(event, aliases, visitors_own) for event in events]
        by_customer: dict[CustomerKey, list[int]] = defaultdict(list)
        for index, (event, profile_id) in enumerate(zip(events, targets, strict=True)):
            by_customer[(event.tenant, profile_id)].append(index)
        latest: dict[str, dict[str, int]] = defaultdict(dict)  # tenant -> customer -> ms
        for (tenant, profile_id), indices in by_customer.items():
            latest[tenant][profile_id] = max(events[i].occurred_at_ms for i in indices)
        now_ms = int(time.time() * 1000)
        tenants = sorted(latest)
        timers = sorted(carts.due_by)
        if started and is_cluster(self.redis):
            async with self.redis.pipeline(transaction=False) as pipe:
                for (topic, partition), offset in started.items():
                    pipe.set(started_key(topic, partition), offset, get=True)
                before = await pipe.execute()
            if known_started is not None:
                check_marks({key: -1 if mark is None else int(mark)
                             for key, mark in zip(started, before, strict=True)},
                            known_started)
            started, known_started = {}, None
        checking: list[Callable[[list[Any]], None]] = []
        reading: list[Callable[[Sequence[Any]], list[Any]]] = []

        def fill(pipe: Any) -> None:
            for (topic, partition), offset in started.items():
                pipe.set(started_key(topic, partition), offset, get=True)
            for (tenant, profile_id), indices in by_customer.items():
                queue_apply(pipe, tenant, profile_id, [
                    [events[i].event_id, events[i].occurred_at_ms, update_for(events[i]),
                     _stitch(events[i])] for i in indices],
                    limits=self.limits.args(), updated_at_ms=now_ms)
            # The customer index (by last event time): duplicates are indexed too, so after
            # a crash between applying and indexing the redelivered events still catch it
            # up; and a visitor is indexed before a merge below removes it for good.
            for tenant in tenants:
                pipe.zadd(customers_key(tenant), latest[tenant], gt=True)
                queue_sketch(pipe, tenant)
            if tenants:
                pipe.sadd(TENANTS_KEY, *tenants)
            for topic, partition in timers:
                pipe.zrangebyscore(cart_timers_key(topic, partition), "-inf",
                                   carts.due_by[(topic, partition)], start=0,
                                   num=CARTS_PER_SWEEP, withscores=True)
            reading.append(queue_get_many(pipe, [watermark_key(topic, partition)
                                                 for topic, partition in carts.partitions]))
            if by_customer:
                checking.append(self._wait_for_replicas(pipe))

        # Safe to repeat after NOSCRIPT: each event at most once, ZADD GT, set-adds, reads,
        # WAIT.
        replies = await execute_pipeline(self.redis, fill, [APPLY_SCRIPT, SKETCH_SCRIPT])
        if checking:
            checking[-1](replies)
        marks = reading[-1](replies)
        if known_started is not None:
            check_marks({key: -1 if mark is None else int(mark)
                         for key, mark in zip(started, replies, strict=False)}, known_started)
        replies = replies[len(started):]
        outcomes: list[AppliedEvent | None] = [None] * len(events)
        customers: dict[CustomerKey, Customer] = {}
        merges: dict[tuple[str, str, str], None] = {}  # (tenant, anonymous id, customer)
        _take_applied(events, by_customer, replies, outcomes, customers, merges)
        rest = replies[len(by_customer):]
        applied = AppliedBatch(
            events=[outcome for outcome in outcomes if outcome is not None], customers=customers,
            clv_rankings={tenant: sketch_from(rest[2 * i + 1])
                          for i, tenant in enumerate(tenants)})
        rest = rest[2 * len(tenants) + (1 if tenants else 0):]
        for (topic, partition), due in zip(timers, rest, strict=False):
            for member, deadline in due:
                tenant, customer_id, event_id = orjson.loads(member)
                applied.due_carts.append(CartTimer(topic, partition, tenant, customer_id,
                                                   event_id, int(deadline)))
        if carts.partitions:
            applied.watermarks = {tp: int(mark) for tp, mark in zip(
                carts.partitions, marks, strict=True) if mark is not None}
        await self._unindex_erased(by_customer, customers, applied.events, events)
        moved = [index for index, outcome in enumerate(outcomes)
                 if outcome is not None and outcome.outcome == "moved"]
        if moved:
            await self._apply_moved(events, moved, outcomes, customers, merges, now_ms)
            applied.events = [outcome for outcome in outcomes if outcome is not None]
        # Read again: the merges changed the customers and deleted the visitors.
        for key, merged in (await merge_visitors(self.redis, self.limits.args(), merges,
                                                 wait=self._wait_for_replicas)).items():
            if merged is None:
                customers.pop(key, None)
                applied.merged_visitors.append(key)
            else:
                customers[key] = merged
        owners = {(timer.tenant, timer.customer_id) for timer in applied.due_carts}
        missing = owners - set(customers) - set(by_customer)
        if missing:
            customers.update(await load_customers(self.redis, sorted(missing)))
        return applied

    async def _apply_moved(self, events: Sequence[AnyEvent], moved: Sequence[int],
                           outcomes: list[AppliedEvent | None],
                           customers: dict[CustomerKey, Customer],
                           merges: dict[tuple[str, str, str], None], now_ms: int) -> None:
        """Apply to their customer the visitor events the apply script handed back: the
        visitor was pointed at a customer between this batch's alias read and its apply (a
        login on another partition, merged by another worker), and that merge may already
        have read the visitor, so applied to the visitor they could be deleted with it."""
        batch = [events[index] for index in moved]
        aliases, _ = await resolve_aliases(self.redis, batch)
        by_customer: dict[CustomerKey, list[int]] = defaultdict(list)
        for index, event in zip(moved, batch, strict=True):
            by_customer[(event.tenant, profile_id_for(event, aliases))].append(index)

        def fill(pipe: Any) -> None:
            for (tenant, profile_id), indices in by_customer.items():
                queue_apply(pipe, tenant, profile_id, [
                    [events[i].event_id, events[i].occurred_at_ms, update_for(events[i]),
                     _stitch(events[i])] for i in indices],
                    limits=self.limits.args(), updated_at_ms=now_ms)
                pipe.zadd(customers_key(tenant), {profile_id: max(
                    events[i].occurred_at_ms for i in indices)}, gt=True)
            for event in batch:  # the visitor is being merged away: out of the index
                pipe.zrem(customers_key(event.tenant), anonymous_profile_id(
                    event.anonymous_id or ""))

        replies = await execute_pipeline(self.redis, fill, [APPLY_SCRIPT])
        _take_applied(events, by_customer, replies[::2], outcomes, customers, merges)
        log.info("applied %d events of visitors being merged to their customers", len(moved))

    async def _unindex_erased(self, by_customer: Mapping[CustomerKey, list[int]],
                              customers: Mapping[CustomerKey, Customer],
                              outcomes: Sequence[AppliedEvent], events: Sequence[AnyEvent]
                              ) -> None:
        """Take erased customers, indexed with the batch, out of the index again (rare: an
        event of a customer erased within the blocking period)."""
        erased = [key for key, indices in by_customer.items()
                  if key not in customers and outcomes[indices[0]].outcome == "erased"]
        if erased:
            async with self.redis.pipeline(transaction=False) as pipe:
                for tenant, profile_id in erased:
                    pipe.zrem(customers_key(tenant), profile_id)
                await pipe.execute()

    async def save_rule_states(self, states: Mapping[CustomerKey, CustomerAlertState], *,
                               timers_opened: Sequence[CartTimer] = (),
                               alerts: Sequence[Alert] = (),
                               drift_alerted_at: Mapping[str, int] | None = None) -> None:
        """Write rule states now (one round trip): the worker saves those of the customers
        whose alerts it is about to publish, so a redelivered trigger repeats them word for
        word (see ``agents/batch.py``). ``timers_opened``: the timers of the carts open in
        those states, written first (a state holding a cart without its timer would never
        fire it; a timer whose state is not written is found moot when it is due).
        ``alerts``: the alerts about to be published; those no trigger repeats are kept
        until the feed has them, with ``drift_alerted_at``, the drift rule's cooldowns (see
        :mod:`feature_store.feed`)."""
        unsent = [alert for alert in alerts if alert.kind in KEPT_UNTIL_FED]
        if states or unsent:
            async with self.redis.pipeline(transaction=False) as pipe:
                _queue_open_timers(pipe, timers_opened)
                queue_set_many(pipe, {alert_state_key(tenant, customer): state.to_json()
                                      for (tenant, customer), state in states.items()})
                if unsent:
                    queue_unsent(pipe, unsent, drift_alerted_at or {})
                await pipe.execute()

    async def carried_over(self) -> CarriedOver:
        """What earlier workers left of their alerts (one round trip): those no trigger
        repeats, saved for publishing and not in the feed yet (a worker died before the
        broker had them, or before its commit), and the drift rule's cooldowns."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(UNSENT_ALERTS_KEY)
            pipe.hgetall(DRIFT_ALERTED_KEY)
            unsent, drift_alerted_at = await pipe.execute()
        return CarriedOver.from_raw(unsent, drift_alerted_at)

    async def commit(self, commit: Commit) -> None:
        """Record a finished batch (one round trip): see :class:`~feature_store.batch.Commit`.
        Progress goes last: whatever else a failed round trip wrote is written again, the
        same, by the batch's retry. On a cluster, progress, watermarks and counters are a
        second round trip, sent once the rest has answered (with ``wait_replicas``: reached
        the replicas)."""
        updated_at_ms = int(time.time() * 1000)
        checking: list[Callable[[list[Any]], None]] = []

        def writes(pipe: Any) -> None:
            queue_score_writes(pipe, commit.scores, updated_at_ms)
            for ticket in commit.tickets:
                queue_ticket_writes(pipe, ticket)
            queue_set_many(pipe, {alert_state_key(tenant, customer): state.to_json()
                                  for (tenant, customer), state in commit.rule_states.items()})
            for timer in commit.timers_closed:
                pipe.zrem(cart_timers_key(timer.topic, timer.partition), _cart_member(timer))
            _queue_open_timers(pipe, commit.timers_opened)
            for kind, count in commit.suppressed.items():
                pipe.hincrby(SUPPRESSED_KEY, kind, count)
            for alert in commit.feed:
                queue_feed(pipe, alert)
            for (tenant, customer), value in commit.recommendation_lists.items():
                pipe.set(CustomerKeys(tenant, customer).recos, value)
            if len(pipe):
                checking.append(self._wait_for_replicas(pipe))

        def record(pipe: Any) -> None:
            for (topic, partition), offset in commit.progress.items():
                pipe.set(progress_key(topic, partition), offset)
            for (topic, partition), watermark in commit.watermarks.items():
                pipe.set(watermark_key(topic, partition), watermark)
            for (topic, outcome), count in commit.outcomes.items():
                pipe.hincrby(METRICS_KEY, f"{topic}|{outcome}", count)

        # The feed's script is EVAL, never EVALSHA: nothing here can meet NOSCRIPT, so this
        # round trip (counters among it) is never sent twice.
        replies = await execute_then(self.redis, writes, record)
        if checking:
            checking[-1](replies)

    # -- scores outside a batch: the silence sweep ----------------------------------------

    async def write_scores(self, records: Sequence[ScoreRecord]) -> None:
        """Write scores (see :mod:`feature_store.scores`) in one round trip."""
        if not records:
            return
        updated_at_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            queue_score_writes(pipe, records, updated_at_ms)
            await pipe.execute()

    async def due_for_rescoring(self, partitions: Iterable[int], watermark_ms: int, *,
                                interval_s: float, target_lag_s: float, smallest: int = 50,
                                largest: int = 5000) -> list[DueCustomer]:
        """Customers of ``partitions`` scored before the watermark, those scored longest ago
        first, as many per partition as keep every one within ``target_lag_s`` of it when
        asked every ``interval_s`` (see :func:`~feature_store.scores.chunk_for`)."""
        partitions = sorted(set(partitions))
        tenants = await self.tenants()
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
        return await self._due_customers([(tenant, text(member), partition)
                                          for (tenant, partition), found
                                          in zip(pairs, members, strict=True)
                                          for member in found])

    async def scoring_indexes(self, partitions: Iterable[int]) -> dict[tuple[str, int], int]:
        """How many customers each (tenant, partition) scoring index of ``partitions`` holds."""
        partitions = sorted(set(partitions))
        tenants = await self.tenants()
        pairs = [(tenant, partition) for tenant in tenants for partition in partitions]
        async with self.redis.pipeline(transaction=False) as pipe:
            for tenant, partition in pairs:
                pipe.zcard(scoring_index_key(tenant, partition))
            sizes = await pipe.execute()
        return {pair: int(size) for pair, size in zip(pairs, sizes, strict=True) if size}

    async def scored_customers(self, tenant: str, partition: int, *, start: int, count: int
                               ) -> tuple[int, list[DueCustomer]]:
        """Up to ``count`` customers of one scoring index from rank ``start`` (oldest score
        first), as :meth:`due_for_rescoring` gives them; answers how many ids the index held
        there too (fewer than ``count``: its end)."""
        members: list[bytes] = await self.redis.zrange(  # type: ignore[assignment]
            scoring_index_key(tenant, partition), start, start + count - 1)
        customers = [(tenant, text(member), partition) for member in members]
        return len(customers), await self._due_customers(customers)

    async def tenants(self) -> list[str]:
        """Every tenant the workers have seen events of, in order."""
        return sorted(text(t) for t in await self.redis.smembers(TENANTS_KEY))  # type: ignore[misc]

    async def _due_customers(self, customers: list[tuple[str, str, int]]) -> list[DueCustomer]:
        """The profiles and rule states of (tenant, customer, partition) ids, as the sweep
        scores them (an erased one, lingering in an index, left out)."""
        if not customers:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            queue_due_profiles(pipe, customers)
            rows = await pipe.execute()
        return due_customers(customers, rows)

    # -- what the API shows besides customers ----------------------------------------------

    async def publish_segments(self, tenant: str,
                               segments: Sequence[tuple[int, str, dict[str, float]]], *,
                               segmenter: str | None = None) -> None:
        """The tenant's segments for the API, given as (id, label, centroid), each with its
        size: the customers now in its set; ``segmenter`` names the segmenter they are of
        (see :func:`feature_store.reads.current_segment`)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for segment, _, _ in segments:
                pipe.scard(segment_members_key(tenant, segment))
            sizes = await pipe.execute()
        records = {
            str(segment): orjson.dumps({"segment": segment, "label": label, "size": int(size),
                                        "centroid": centroid, "segmenter": segmenter})
            for (segment, label, centroid), size in zip(segments, sizes, strict=True)}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(segments_key(tenant))
            if records:
                pipe.hset(segments_key(tenant), mapping=records)  # type: ignore[arg-type]
            await pipe.execute()

    async def claim_segments(self, tenant: str, worker: str, lease_ms: int
                             ) -> tuple[bool, bytes | None]:
        """Take or renew ``worker``'s lease on fitting the tenant's segments: whether it holds
        it, and the fit stored now (see :mod:`feature_store.segment_fits`)."""
        return await segment_fits.claim(self.redis, tenant, worker, lease_ms)

    async def publish_segment_fit(self, tenant: str, worker: str, fit: bytes) -> bool:
        """Store the tenant's fit for the other workers, if ``worker`` holds the lease."""
        return await segment_fits.publish(self.redis, tenant, worker, fit)

    async def release_segments(self, tenant: str, worker: str) -> None:
        """Give up ``worker``'s lease on the tenant's segments (a worker stopping)."""
        await segment_fits.release(self.redis, tenant, worker)

    async def publish_forecasts(self, worker: str,
                                forecasts: Mapping[str, Mapping[str, Mapping[str, Any]]],
                                at_ms: int) -> None:
        """This worker's revenue forecasts, per tenant (see :mod:`feature_store.forecasts`),
        in one round trip."""
        if not forecasts:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for tenant, series in forecasts.items():
                queue_forecasts(pipe, tenant, worker, series, at_ms)
            await pipe.execute()

    async def publish_telemetry(self, models: Sequence[ModelTelemetry], *, at_ms: int,
                                events_per_s: float, lag: int | None) -> None:
        """Each model's version, examples and metrics (latest, and a capped history for the
        dashboard's charts), and the worker's throughput, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            if models:
                pipe.hset(MODELS_KEY, mapping={  # type: ignore[arg-type]
                    model.name: orjson.dumps({
                        "name": model.name, "version": model.version,
                        "example_count": model.example_count, "metrics": model.metrics,
                        "details": model.details, "updated_at": at_ms})
                    for model in models})
            for model in models:
                pipe.xadd(MODELS_HISTORY_KEY, {"at": at_ms, "model": model.name,
                                               "metrics": orjson.dumps(model.metrics)},
                          maxlen=5000, approximate=True)
            pipe.xadd(THROUGHPUT_KEY, {"at": at_ms, "events_per_s": f"{events_per_s:.1f}",
                                       "lag": -1 if lag is None else lag},
                      maxlen=2000, approximate=True)
            await pipe.execute()

    # -- erasure ---------------------------------------------------------------------------

    async def erase(
        self, *, tenant: str, customer_id: str, block_seconds: float, receipt_id: str
    ) -> int:
        """Delete every key of a customer and block their later events for a while."""
        keys = CustomerKeys(tenant, customer_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(keys.key("merged"))
            pipe.hmget(keys.profile, ["segment", "scoring_partition"])
            pipe.hkeys(keys.key("tickets"))
            pipe.hkeys(keys.key("triage"))
            members, (segment, partition), tickets, triaged = await pipe.execute()
        merged = {text(member).split("|")[0] for member in members}
        ticket_ids = sorted({text(t) for t in tickets} | {text(t) for t in triaged})

        def delete(pipe: Pipeline) -> None:
            pipe.delete(*keys.all())
            for owner in owner_keys(tenant, ticket_ids):
                pipe.delete(owner)
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

        def receipt(pipe: Pipeline) -> None:
            pipe.hset(erasure_receipt_key(receipt_id), mapping={
                "status": "done", "tenant": tenant, "customer_id": customer_id,
                "completed_at": str(int(time.time() * 1000)),
            })
            pipe.expire(erasure_receipt_key(receipt_id), 90 * 86_400)

        # The receipt says done only once everything is deleted.
        replies = await execute_then(self.redis, delete, receipt)
        deleted = int(replies[0])
        log.info("erased customer %s/%s (%d keys), receipt %s", tenant, customer_id, deleted,
                 receipt_id)
        return deleted


def _take_applied(events: Sequence[AnyEvent], by_customer: Mapping[CustomerKey, list[int]],
                  replies: Sequence[Any], outcomes: list[AppliedEvent | None],
                  customers: dict[CustomerKey, Customer],
                  merges: dict[tuple[str, str, str], None]) -> None:
    """Read the apply script's replies (one per customer of ``by_customer``, in order): each
    event's outcome, the merges its stitching events ask for, and the customers as applied."""
    for ((tenant, profile_id), indices), reply in zip(by_customer.items(), replies,
                                                      strict=False):
        per_event, state = reply
        for index, (outcome, needs_merge) in zip(indices, per_event, strict=True):
            outcomes[index] = AppliedEvent(text(outcome), profile_id)
            if int(needs_merge):
                merges[(tenant, _stitch(events[index]), profile_id)] = None
        customer = customer_from(state)
        if customer is not None:
            customers[(tenant, profile_id)] = customer


def _stitch(event: AnyEvent) -> str:
    """The visitor an event of a known customer stitches to them ("" for none)."""
    return event.anonymous_id if event.customer_id and event.anonymous_id else ""

