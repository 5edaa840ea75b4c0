"""The worker's batch, in one place: :func:`process_batch`, read top to bottom.

decode (invalid → dead letter) → ``store.apply`` (features, stitching; the batch's customers
as they now stand) → models learn and score in memory, each customer once → rules decide →
alerts publish → ``store.commit`` (scores, rule state, cart timers, feed, progress). Each
step takes and returns plain data; no Faust here, so the whole path from bytes to Redis is
testable without a consumer group (``tests/unit/test_batch.py`` drives it against an
in-memory store, the integration tests against Redis).

The order is what makes the batch effectively once. A crash between any two steps repeats
at most one batch, and every repeated step is idempotent: dead letters repeat with the same
id, events are applied once by id, the same alert ids go out again and the feed takes each
once. The same holds for a batch retried after a failed Redis round trip
(:mod:`agents.outage`). The messages such a batch may have processed before lie between the
partition's progress and its started mark (:class:`~feature_store.batch.Progress`), so the
batch can tell a redelivered event (judged again by the models and the rules, so an alert
it fired before is repeated with the same id, never lost) from the same event sent twice by
a shop (which counts once and alerts once).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from agents.decoding import Partition, RawMessage, decode_batch
from agents.models import ModelEvent, ModelStep
from agents.partitions import Partitions
from agents.publishing import AlertPublisher
from agents.rules import AlertRules
from feature_store import Commit, FeatureStore
from schemas.records import DeadLetter
from stream.metrics import BATCH_STEPS, EVENTS_PROCESSED

log = logging.getLogger(__name__)


class DeadLetters(Protocol):
    async def publish_all(self, dead_letters: Sequence[DeadLetter]) -> None: ...


class Rereads(Protocol):
    """Messages of a partition read again from the broker (:mod:`stream.rereads`)."""

    async def read(self, topic: str, partition: int, *, first: int, end: int,
                   limit: int) -> list[tuple[int, bytes]]: ...


#: At most this many messages of a partition read again at once (see :func:`catch_up`).
REREAD_CHUNK = 2_000


@dataclass
class Worker:
    """What a batch runs on: the store, the steps' state, and the publishers."""

    store: FeatureStore
    partitions: Partitions
    dead_letters: DeadLetters
    models: ModelStep
    rules: AlertRules
    alerts: AlertPublisher
    max_event_bytes: int
    #: Make recommendation lists in the worker, with each batch (no recommender process).
    lists_in_worker: bool = False
    #: Where the messages Redis forgot are read again (None: Redis is trusted never to).
    rereads: Rereads | None = None
    processed: int = 0
    #: Whether the worker took up what earlier workers left of their alerts (unsent ones,
    #: the drift rule's cooldowns) from the store.
    resumed: bool = False
    #: Held by a batch from reading its customers to writing their scores and rule states,
    #: and by the silence sweep's ticks (:class:`agents.rescoring.SilenceSweep`) likewise.
    scores_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class BatchReport:
    """What happened to a batch's messages (by topic and outcome), and which were
    redeliveries judged again."""

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    redelivered: list[RawMessage] = field(default_factory=list)


async def process_batch(worker: Worker, messages: Sequence[RawMessage]) -> BatchReport:
    """Process one micro-batch of input messages, top to bottom."""
    if not messages:
        return BatchReport()
    keys = {(m.topic, m.partition) for m in messages}
    if worker.rereads is not None and (fresh := worker.partitions.unknown(keys)):
        await catch_up(worker, fresh, messages)
    # The silence sweep waits until the batch has written the customers it read (and the
    # batch for a tick): neither writes over what the other read and has not yet written.
    async with worker.scores_lock:
        progress = await worker.partitions.read(worker.store, keys)
        now = datetime.now(UTC)
        with BATCH_STEPS["decode"].time():
            decoded = decode_batch(messages, progress, max_event_bytes=worker.max_event_bytes,
                                   now=now)
            await worker.dead_letters.publish_all(decoded.dead_letters)  # before anything else
        advanced = worker.partitions.advance(decoded.events, now_ms=int(now.timestamp() * 1000))

        started = (worker.partitions.started(decoded.last_offsets, progress)
                   if decoded.events else {})
        with BATCH_STEPS["apply"].time():
            applied = await worker.store.apply(
                [item.event for item in decoded.events], started=started,
                carts=worker.rules.cart_sweep(advanced),
                known_started=worker.partitions.known_started(started))
        report = BatchReport(outcomes=decoded.outcomes)
        judged: list[ModelEvent] = []
        for item, applied_event in zip(decoded.events, applied.events, strict=True):
            message, outcome = item.message, applied_event.outcome
            report.outcomes[(message.topic, outcome)] += 1
            redelivered = outcome == "duplicate" and progress[
                (message.topic, message.partition)].redelivers(message.offset)
            if outcome == "ok" or redelivered:
                judged.append(ModelEvent(item.event, (item.event.tenant, applied_event.profile_id),
                                         message.partition, new=not redelivered))
            if redelivered:
                report.redelivered.append(message)
        # A batch mixes topics: learn and alert in event-time order (stable for equal times).
        judged.sort(key=lambda model_event: model_event.event.occurred_at_ms)

        with BATCH_STEPS["models"].time():
            scored = worker.models.learn_and_score(judged, applied.customers, applied.clv_rankings,
                                                   worker.partitions.model_watermark())
            worker.models.forget_visitors(applied.merged_visitors)
        with BATCH_STEPS["rules"].time():
            if not worker.resumed:  # the first batch since the worker started
                left = await worker.store.carried_over()
                worker.alerts.carry(left.unsent)
                worker.rules.resume_drift_cooldowns(left.drift_alerted_at)
                worker.resumed = True
            decided = worker.rules.decide(
                scored.updates, applied, advanced,
                lateness_ms=worker.partitions.allowed_lateness_ms)
            decided.alerts += worker.rules.drift_alerts(
                scored.drifts, sorted(worker.models.tenants_seen),
                model_version=worker.models.bundle.version)
        with BATCH_STEPS["publish"].time():
            # Their rule state first: a redelivered trigger then repeats its alert word for word
            # (and the carts the batch opened for them keep their timers). The alerts no
            # trigger repeats (a model's drift) are kept in the store until they are in the feed.
            await worker.store.save_rule_states(decided.alerting,
                                                timers_opened=decided.alerting_timers(),
                                                alerts=decided.alerts,
                                                drift_alerted_at=worker.rules.drift_alerted_at())
            carried = await worker.alerts.publish(decided.alerts, decided.repeats)
        lists = worker.models.lists_in_worker() if worker.lists_in_worker else {}

        with BATCH_STEPS["commit"].time():
            await worker.store.commit(Commit(
                scores=scored.records, tickets=scored.tickets, rule_states=decided.states,
                timers_opened=decided.timers_opened, timers_closed=decided.timers_closed,
                suppressed=decided.suppressed, feed=[*decided.alerts, *carried],
                recommendation_lists=lists,
                progress=decoded.last_offsets,
                watermarks=worker.partitions.watermarks(progress), outcomes=report.outcomes))
        worker.partitions.done(decoded.last_offsets, started)
        for (topic, outcome), count in report.outcomes.items():
            EVENTS_PROCESSED.labels(topic=topic, outcome=outcome).inc(count)
        worker.processed += len(messages)
        return report


async def catch_up(worker: Worker, partitions: set[Partition],
                   messages: Sequence[RawMessage]) -> None:
    """Process what Redis forgot it had processed: the messages of each of ``partitions``
    (whose progress is read now) between its progress and the first one delivered.

    Kafka's committed offset follows Redis's progress (a batch is acked only once it is
    recorded), so the consumer can be past Redis only if Redis lost writes (restarted from
    an append-only file missing its last second). Kafka will not deliver those messages
    again: they are read from the broker (:mod:`stream.rereads`) and processed first, and
    the partition's event time goes back to Redis's watermark, as they move it on again.
    """
    assert worker.rereads is not None
    await worker.partitions.read(worker.store, partitions)
    first: dict[Partition, int] = {}
    for message in messages:
        key = (message.topic, message.partition)
        first[key] = min(first.get(key, message.offset), message.offset)
    for key in sorted(partitions):
        end = first[key]
        if end <= worker.partitions.done_offset(key) + 1:
            continue
        log.warning("%s/%d: Redis has progress up to offset %d but the consumer delivers %d; "
                    "reading the messages in between again", *key,
                    worker.partitions.done_offset(key), end)
        worker.partitions.rewind(key)
        while end > (done := worker.partitions.done_offset(key)) + 1:
            again = await worker.rereads.read(*key, first=done + 1, end=end,
                                              limit=REREAD_CHUNK)
            if not again:
                break
            await process_batch(worker, [RawMessage(*key, offset, value)
                                         for offset, value in again])
