"""The alert engine: rule state in Redis, alerts to ``crm.alerts`` and the Redis alert feed.

Per customer, one JSON string under the customer's hash tag (``crm:{tenant/customer}:alerts``)
holds what :mod:`agents.alert_rules` remembers: K-consecutive counters, hysteresis
switches, the last alert per kind (its cooldown, and its id for a redelivery), the latest
consent and the open cart. Open carts are also timers in a zset per input partition
(``crm:alerts:carts:{topic/partition}``, scored by deadline in event time) that watermarks
drain.

Crash safety follows the pipeline's order (evaluate → publish → record progress):

* ``evaluate`` stores the new state before anything is published. A redelivered trigger is
  recognised (``seen``) and repeats its stored alert, same id, same content. (An event the
  shop sent twice never gets here: the worker hands the rules only redelivered duplicates,
  see :meth:`agents.pipeline.BatchResult.redelivered`.)
* ``on_watermark`` leaves a fired cart in its zset until ``publish`` has flushed the alert;
  after a crash the next watermark finds it again and repeats the same alert.
* ``publish`` flushes the idempotent producer before returning, then appends each alert id
  once to the capped Redis stream the API reads (a marker key drops repeats there). An
  alert id the broker acknowledged to this engine lately is not produced again: a batch
  retried after a failed Redis round trip repeats its alerts to the feed only.

Kafka consumers of ``crm.alerts`` may therefore see an alert id twice, but only after a crash
(each repeat counted in ``crm_alerts_repeated_total``), never a different alert for the same
trigger, and never lose one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import Counter

from agents.alert_config import AlertConfig, AlertConfigWatcher
from agents.alert_rules import (
    CustomerAlertState,
    CustomerUpdate,
    Decision,
    OpenCart,
    Outcome,
    evaluate_update,
    fire_cart,
)
from feature_store.keys import (
    ALERTS_STREAM_KEY,
    PREFIX,
    CustomerKeys,
    anonymous_profile_id,
    watermark_key,
)
from schemas.records import Alert
from schemas.topics import ALERTS, CLICKS, PURCHASES
from stream.delivered import DeliveredIds
from stream.settings import Settings, kafka_client_config

log = logging.getLogger(__name__)

#: Hash: alert kind -> alerts suppressed because the customer declined marketing.
SUPPRESSED_KEY = f"{PREFIX}:metrics:alerts_suppressed"
ALERTS_STREAM_MAXLEN = 10_000
#: At most this many due carts per watermark call (the rest fire on the next one).
CARTS_PER_SWEEP = 1_000
#: Profiles of anonymous visitors: no one to send marketing to, so no alerts.
_ANONYMOUS_PREFIX = anonymous_profile_id("")
#: How long the Redis feed remembers that an alert id was appended (drops crash repeats).
FEED_MARKER_TTL_S = 2 * 86_400
#: How many alert ids the broker acknowledged an engine remembers, so that a batch retried
#: in the same process does not produce them again (a batch holds at most a few hundred).
ACKNOWLEDGED_IDS = 10_000

ALERTS_PUBLISHED = Counter("crm_alerts_published",
                           "Alerts produced to crm.alerts (repeats included)", ["kind"])
ALERTS_REPEATED = Counter(
    "crm_alerts_repeated",
    "Alerts produced to crm.alerts again with the same id: their trigger was redelivered "
    "after a crash, so the broker may have them already", ["kind"])
ALERTS_SUPPRESSED = Counter("crm_alerts_suppressed",
                            "Alerts a rule wanted but consent or a cooldown held back",
                            ["kind", "reason"])

# Append an alert to the feed once per id. Both keys share one slot: the marker's hash tag
# is the stream's whole name.
_FEED_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[4]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
                    'alert', ARGV[1], 'tenant', ARGV[2], 'kind', ARGV[3])
end
return false
"""


def alert_state_key(tenant: str, customer_id: str) -> str:
    return CustomerKeys(tenant, customer_id).key("alerts")


def cart_timers_key(topic: str, partition: int) -> str:
    return f"{PREFIX}:alerts:carts:{{{topic}/{partition}}}"


def _feed_marker_key(alert_id: str) -> str:
    return f"{{{ALERTS_STREAM_KEY}}}:sent:{alert_id}"


def _cart_member(tenant: str, customer_id: str, event_id: str) -> bytes:
    return orjson.dumps([tenant, customer_id, event_id])


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _no_writes(pipe: Any) -> None:
    """The Redis writes of publishing no alerts."""


class AlertPublishError(RuntimeError):
    """Some alerts were not acknowledged by the broker; the batch must not be marked done."""


class KafkaProducerLike(Protocol):
    def produce(self, topic: str, value: bytes, key: str, on_delivery: Any) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


class AlertEngine:
    """Evaluate the alert rules for micro-batches and watermarks; publish what fires.

    Share one engine between a worker's agents: it serialises its read-modify-write of rule
    state, so two agents updating one customer (a click and a purchase) never lose an update.
    """

    def __init__(self, *, redis: aioredis.Redis, settings: Settings,
                 config: AlertConfig | AlertConfigWatcher | None = None,
                 producer: KafkaProducerLike | None = None) -> None:
        self.redis = redis
        self.settings = settings
        if isinstance(config, AlertConfigWatcher):
            self.watcher: AlertConfigWatcher | None = config
        elif config is None:
            self.watcher = AlertConfigWatcher(settings.alerts_config)
        else:
            self.watcher = None
            self._fixed_config = config
        self._producer: Any = producer or Producer({
            **kafka_client_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 1,
        })
        self.topic = settings.topic(ALERTS)
        self._clicks = settings.topic(CLICKS)
        self._purchases = settings.topic(PURCHASES)
        self._lock = asyncio.Lock()
        self._failed = 0
        self._pending_carts: dict[str, tuple[str, bytes]] = {}  # alert id -> (zset, member)
        self._acknowledged = DeliveredIds(ACKNOWLEDGED_IDS)  # ids the broker acknowledged
        # Ids produced whose delivery the broker has not answered yet (a flush that timed out
        # leaves them queued in the producer, which keeps sending them): a retry waits for
        # them rather than produce them again. Delivery callbacks run in the flushing thread.
        self._in_flight: set[str] = set()
        self._delivery_lock = threading.Lock()
        self._repeats: set[str] = set()  # ids to publish that their trigger fired before

    @property
    def config(self) -> AlertConfig:
        return self.watcher.current() if self.watcher is not None else self._fixed_config

    def install_sighup_handler(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.watcher is not None:
            self.watcher.install_sighup_handler(loop)

    # -- rules ---------------------------------------------------------------------------

    async def evaluate(self, updates: Sequence[CustomerUpdate]) -> list[Alert]:
        """Run the rules over a micro-batch (in order); the alerts to publish, each id once."""
        return await self.on_batch(updates, {})

    async def on_batch(
        self,
        updates: Sequence[CustomerUpdate],
        watermarks: Mapping[tuple[str, int], int],
        states: Mapping[tuple[str, str], CustomerAlertState] | None = None,
    ) -> list[Alert]:
        """:meth:`evaluate` the micro-batch's updates, then :meth:`on_watermarks` for the
        partitions it advanced; the new rule state is saved in the round trip that reads
        the due cart timers.

        ``states`` are the customers' rule states when the caller read them already (see
        :meth:`queue_state_reads`); else they are read here.
        """
        updates = [u for u in updates if not u.customer_id.startswith(_ANONYMOUS_PREFIX)]
        relevant = {(topic, partition): mark for (topic, partition), mark in watermarks.items()
                    if topic in (self._clicks, self._purchases)}
        if not updates and not relevant:
            return []
        config, now = self.config, datetime.now(UTC)
        async with self._lock:
            decisions: list[Decision] = []
            owners = list(dict.fromkeys((u.tenant, u.customer_id) for u in updates))
            if owners and (states is None or not all(owner in states for owner in owners)):
                states = await self._load_states(owners)
            batch_states = {owner: states[owner] for owner in owners} if states else {}
            carts_before = {owner: batch_states[owner].cart for owner in owners}
            for update in updates:
                decisions += evaluate_update(
                    update, batch_states[(update.tenant, update.customer_id)], config, now=now)
            async with self.redis.pipeline(transaction=False) as pipe:
                self._save_states(pipe, batch_states)
                for (tenant, customer_id), state in batch_states.items():
                    self._move_cart(pipe, tenant, customer_id,
                                    carts_before[(tenant, customer_id)], state.cart)
                self._count(pipe, decisions)
                read_due = self._queue_due_carts(pipe, relevant)
                replies = await pipe.execute()
            fired = self._to_publish(decisions)
            if relevant:
                fired += await self._fire_due_carts(relevant, read_due(replies), config, now)
        return fired

    def queue_state_reads(self, pipe: Any, customers: Iterable[tuple[str, str]]
                          ) -> Callable[[list[Any]], dict[tuple[str, str], CustomerAlertState]]:
        """Queue the read of the customers' rule states on ``pipe`` (for :meth:`on_batch`,
        in a round trip shared with other reads); the function returned parses the replies.
        Anonymous visitors have none."""
        owners = [owner for owner in dict.fromkeys(customers)
                  if not owner[1].startswith(_ANONYMOUS_PREFIX)]
        index = len(pipe.command_stack)
        if owners:
            pipe.mget([alert_state_key(tenant, customer) for tenant, customer in owners])

        def read(replies: list[Any]) -> dict[tuple[str, str], CustomerAlertState]:
            if not owners:
                return {}
            return {owner: CustomerAlertState.from_json(value)
                    for owner, value in zip(owners, replies[index], strict=True)}

        return read

    async def on_watermark(self, topic: str, partition: int, watermark_ms: int) -> list[Alert]:
        """Fire the cart timers of ``partition`` whose deadline the watermark has passed.

        Called with the watermark of a clicks or purchases partition (others are ignored).
        With ``wait_for_purchases`` the purchases partition's watermark must have passed the
        deadline too, so a purchase still waiting in a lagging consumer cannot be missed.
        """
        return await self.on_watermarks({(topic, partition): watermark_ms})

    async def on_watermarks(self, watermarks: Mapping[tuple[str, int], int]) -> list[Alert]:
        """:meth:`on_watermark` for all partitions a micro-batch advanced, in three round
        trips in all (timers, then the owners' state and profiles, then the new state)
        rather than in three per partition.

        The other topic's watermark of the same partition comes from ``watermarks`` when the
        batch advanced it too, else from what the pipeline last recorded in Redis.
        """
        return await self.on_batch([], watermarks)

    def _queue_due_carts(self, pipe: Any, relevant: Mapping[tuple[str, int], int]
                         ) -> Callable[[list[Any]], list[tuple[int, list[Any], list[Any]]]]:
        """Queue, per partition, the stored watermarks and the cart timers due by the
        watermarks; the function returned gives (partition, stored, due) per partition."""
        partitions = sorted({partition for _, partition in relevant})
        start = len(pipe.command_stack)
        for partition in partitions:
            pipe.mget([watermark_key(self._clicks, partition),
                       watermark_key(self._purchases, partition)])
            bound = max(mark for (_, p), mark in relevant.items() if p == partition)
            pipe.zrangebyscore(cart_timers_key(self._clicks, partition), "-inf", bound,
                               start=0, num=CARTS_PER_SWEEP, withscores=True)

        def read(replies: list[Any]) -> list[tuple[int, list[Any], list[Any]]]:
            mine = replies[start:start + 2 * len(partitions)]
            return list(zip(partitions, mine[::2], mine[1::2], strict=True))

        return read

    async def _fire_due_carts(self, relevant: Mapping[tuple[str, int], int],
                              due_per_partition: list[tuple[int, list[Any], list[Any]]],
                              config: AlertConfig, now: datetime) -> list[Alert]:
        """Fire the carts whose deadline the effective watermark passed (lock held)."""
        wait = config.cart_abandonment.wait_for_purchases
        pending = set(self._pending_carts.values())
        carts: list[tuple[int, str, bytes, str, str, str]] = []
        effective: dict[int, int] = {}
        for partition, stored, due in due_per_partition:
            effective[partition] = self._effective_watermark(
                partition, relevant, stored_clicks=_int(stored[0]),
                stored_purchases=_int(stored[1]), wait_for_purchases=wait)
            timers = cart_timers_key(self._clicks, partition)
            carts += [(partition, timers, member, *orjson.loads(member))
                      for member, deadline in due
                      if deadline <= effective[partition] and (timers, member) not in pending]
        if not carts:
            return []
        owners = list(dict.fromkeys((cart[3], cart[4]) for cart in carts))
        states, profiles = await self._states_and_profile_facts(owners)
        decisions: list[Decision] = []
        removals: dict[str, list[bytes]] = {}
        for partition, timers, member, tenant, customer_id, event_id in carts:
            exists, last_order_at, cart_adds = profiles[(tenant, customer_id)]
            decision = fire_cart(
                tenant=tenant, customer_id=customer_id, event_id=event_id,
                state=states[(tenant, customer_id)], config=config,
                watermark_ms=effective[partition], last_order_at_ms=last_order_at,
                cart_adds=cart_adds, profile_exists=exists, now=now)
            if decision is not None and decision.publish:
                self._pending_carts[decision.alert.alert_id] = (timers, member)
            else:
                removals.setdefault(timers, []).append(member)
            if decision is not None:
                decisions.append(decision)
        async with self.redis.pipeline(transaction=False) as pipe:
            self._save_states(pipe, states)
            for timers, members in removals.items():
                pipe.zrem(timers, *members)
            self._count(pipe, decisions)
            await pipe.execute()
        return self._to_publish(decisions)

    def _effective_watermark(self, partition: int, watermarks: Mapping[tuple[str, int], int], *,
                             stored_clicks: int | None, stored_purchases: int | None,
                             wait_for_purchases: bool) -> int:
        """How far in event time the carts of ``partition`` may be judged.

        A purchases watermark alone never outruns the clicks recorded for the partition; a
        clicks watermark waits for the purchases one when ``wait_for_purchases``. A watermark
        never recorded does not hold the other back.
        """
        clicks = watermarks.get((self._clicks, partition))
        purchases = watermarks.get((self._purchases, partition))
        candidates = []
        if clicks is not None:
            other = purchases if purchases is not None else stored_purchases
            candidates.append(min(clicks, other) if wait_for_purchases and other is not None
                              else clicks)
        if purchases is not None:
            other = clicks if clicks is not None else stored_clicks
            candidates.append(min(purchases, other) if other is not None else purchases)
        return max(candidates)

    # -- publishing ----------------------------------------------------------------------

    async def publish(self, alerts: Sequence[Alert], timeout: float = 30.0) -> None:
        """Produce to ``crm.alerts`` keyed by customer, wait for the broker, then feed Redis."""
        feed = await self.publish_to_topic(alerts, timeout)
        async with self.redis.pipeline(transaction=False) as pipe:
            feed(pipe)
            await pipe.execute()

    async def publish_to_topic(self, alerts: Sequence[Alert], timeout: float = 30.0
                               ) -> Callable[[Any], None]:
        """Produce to ``crm.alerts`` keyed by customer and wait for the broker; answer the
        Redis writes that must follow (the feed, once per alert id, and the fired cart
        timers' removal) for the caller to queue on a pipeline it sends anyway.

        The worker queues them on the round trip that records the batch's progress, so an
        alert costs its batch no Redis round trip of its own. A crash before that round trip
        repeats the batch: the same alerts (same ids) go to Kafka again and the feed still
        takes each once. A batch retried in this process after that round trip failed
        produces none of them again: the broker acknowledged them to this engine.
        """
        unique = list({alert.alert_id: alert for alert in alerts}.values())
        if not unique:
            return _no_writes
        payloads = [orjson.dumps(alert.model_dump(mode="json")) for alert in unique]
        with self._delivery_lock:
            waiting = any(alert.alert_id in self._in_flight for alert in unique)
            sent = [(alert, payload) for alert, payload in zip(unique, payloads, strict=True)
                    if alert.alert_id not in self._acknowledged
                    and alert.alert_id not in self._in_flight]
            self._in_flight.update(alert.alert_id for alert, _ in sent)
        for alert, payload in sent:
            self._produce(alert.alert_id, alert.customer_id, payload)
        if sent or waiting:
            remaining = await asyncio.get_running_loop().run_in_executor(
                None, self._producer.flush, timeout)
            if remaining or self._failed:
                failed, self._failed = self._failed, 0
                raise AlertPublishError(f"{remaining} alerts unsent, {failed} failed")
        fired_carts = [cart for alert in unique
                       if (cart := self._pending_carts.pop(alert.alert_id, None)) is not None]
        for alert, _ in sent:
            ALERTS_PUBLISHED.labels(kind=alert.kind.value).inc()
            if alert.alert_id in self._repeats:
                ALERTS_REPEATED.labels(kind=alert.kind.value).inc()
        self._repeats.difference_update(alert.alert_id for alert in unique)
        if sent:
            log.info("published %d alerts to %s", len(sent), self.topic)

        def feed(pipe: Any) -> None:
            for alert, payload in zip(unique, payloads, strict=True):
                # EVAL, not EVALSHA: nothing to reload after a Redis restart, and a round
                # trip that also records progress must never be sent twice.
                pipe.eval(_FEED_ONCE, 2, _feed_marker_key(alert.alert_id), ALERTS_STREAM_KEY,
                          payload, alert.tenant, alert.kind.value, FEED_MARKER_TTL_S,
                          ALERTS_STREAM_MAXLEN)
            for cart in fired_carts:
                pipe.zrem(*cart)

        return feed

    def forget_unpublished(self) -> None:
        """A batch failed before its alerts were published: forget the carts it fired and
        the repeats it decided, for its retry to fire and decide them again."""
        self._pending_carts.clear()
        self._repeats.clear()

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)

    def _produce(self, alert_id: str, key: str, payload: bytes) -> None:
        while True:
            try:
                self._producer.produce(self.topic, value=payload, key=key,
                                       on_delivery=functools.partial(self._delivered, alert_id))
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def _delivered(self, alert_id: str, error: KafkaError | None, message: Message) -> None:
        with self._delivery_lock:
            self._in_flight.discard(alert_id)
            if error is None:
                self._acknowledged.add(alert_id)
                return
            self._failed += 1
        log.error("alert %s for %s could not be delivered: %s", alert_id, message.key(),
                  error.str())

    # -- Redis helpers -------------------------------------------------------------------

    async def _load_states(self, owners: list[tuple[str, str]]
                           ) -> dict[tuple[str, str], CustomerAlertState]:
        # One MGET, not one command per customer: redis-py's per-command cost dominates.
        raw = await self.redis.mget([alert_state_key(tenant, customer) for tenant, customer
                                     in owners])
        return {owner: CustomerAlertState.from_json(value)
                for owner, value in zip(owners, raw, strict=True)}

    @staticmethod
    def _save_states(pipe: Any, states: dict[tuple[str, str], CustomerAlertState]) -> None:
        if states:
            pipe.mset({alert_state_key(tenant, customer): state.to_json()
                       for (tenant, customer), state in states.items()})

    async def _states_and_profile_facts(
        self, owners: list[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], CustomerAlertState],
               dict[tuple[str, str], tuple[bool, int | None, int]]]:
        """Per customer: the alert state, and whether the profile exists, ``last_order_at``
        (ms) and ``cart_adds`` (one round trip)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.mget([alert_state_key(tenant, customer) for tenant, customer in owners])
            for tenant, customer_id in owners:
                pipe.hmget(CustomerKeys(tenant, customer_id).profile,
                           ["customer_id", "last_order_at", "cart_adds"])
            raw_states, *rows = await pipe.execute()
        states = {owner: CustomerAlertState.from_json(value)
                  for owner, value in zip(owners, raw_states, strict=True)}
        facts = {owner: (row[0] is not None, _int(row[1]), _int(row[2]) or 0)
                 for owner, row in zip(owners, rows, strict=True)}
        return states, facts

    def _move_cart(self, pipe: Any, tenant: str, customer_id: str, before: OpenCart | None,
                   after: OpenCart | None) -> None:
        if before == after:
            return
        if before is not None:
            pipe.zrem(cart_timers_key(self._clicks, before.partition),
                      _cart_member(tenant, customer_id, before.event_id))
        if after is not None:
            pipe.zadd(cart_timers_key(self._clicks, after.partition),
                      {_cart_member(tenant, customer_id, after.event_id): after.deadline_ms})

    @staticmethod
    def _count(pipe: Any, decisions: Iterable[Decision]) -> None:
        for decision in decisions:
            kind = decision.alert.kind.value
            if decision.outcome is Outcome.SUPPRESSED_CONSENT:
                pipe.hincrby(SUPPRESSED_KEY, kind, 1)
                ALERTS_SUPPRESSED.labels(kind=kind, reason="consent").inc()
            elif decision.outcome is Outcome.SUPPRESSED_COOLDOWN:
                ALERTS_SUPPRESSED.labels(kind=kind, reason="cooldown").inc()

    def _to_publish(self, decisions: Sequence[Decision]) -> list[Alert]:
        """The alerts to send, in decision order, each id once; those only repeated are
        remembered, to be counted when they are produced again."""
        emitted = {d.alert.alert_id for d in decisions if d.outcome is Outcome.EMIT}
        self._repeats.update(d.alert.alert_id for d in decisions
                             if d.outcome is Outcome.REPEAT and d.alert.alert_id not in emitted)
        return list({d.alert.alert_id: d.alert for d in decisions if d.publish}.values())
