"""One micro-batch of input messages → dead letters, feature updates, progress. No Faust here.

The Faust agents hand each batch to :class:`EventPipeline`, so the whole path from bytes to
Redis is testable without a consumer group. The order of the steps is what makes the
pipeline effectively once:

1. skip messages at or below the partition's recorded progress (a redelivery after a crash;
   read from Redis once per partition and assignment, then kept in step by step 4). When
   Redis lost its last writes, its progress is behind the first message the consumer now
   delivers: the messages in between are read from the broker again and processed first
   (:mod:`stream.rereads`), as Kafka will not deliver them again;
2. decode; invalid messages become dead letters, published and flushed first;
3. apply valid events to Redis in one pipeline (each event atomically, at most once by id),
   the follower's reads of the batch's customers (models, alert rules) queued behind them,
   the batch's offsets recorded as started in front of them;
4. record progress, watermarks and outcome counters.

A crash between any two steps repeats at most the work of one batch, and every repeated
step is idempotent (dead letters repeat with the same id). The same holds for a batch
retried after a failed Redis round trip (:mod:`agents.outage`). The messages such a batch
may have processed before lie between the partition's progress and its started mark
(:class:`~feature_store.store.Progress`), so a follower can tell a redelivered event from
the same event sent twice by a shop (:meth:`BatchResult.redelivered`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from redis.asyncio.client import Pipeline

from feature_store.store import Applied, FeatureStore, Progress
from schemas.problems import Problem
from stream.codec import AnyEvent, dead_letter_for, decode
from stream.deadletters import DeadLetterPublisher
from stream.metrics import BATCH_STEPS, EVENTS_PROCESSED
from stream.rereads import PartitionReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawMessage:
    """The part of a Kafka message the pipeline needs."""

    topic: str
    partition: int
    offset: int
    value: bytes


@dataclass
class BatchResult:
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    applied: list[tuple[RawMessage, AnyEvent, Applied]] = field(default_factory=list)
    #: How far each of the batch's partitions had got when the batch began.
    progress: dict[tuple[str, int], Progress] = field(default_factory=dict)

    def redelivered(self, message: RawMessage) -> bool:
        """Whether a batch that never finished may have processed ``message`` before (a
        crash, a rebalance, a failed round trip). An event the store calls a duplicate is
        then this very message again; otherwise the shop sent its event id twice."""
        progress = self.progress.get((message.topic, message.partition))
        return progress is not None and progress.redelivers(message.offset)


#: At most this many messages of a partition read again at once (see
#: :meth:`EventPipeline._catch_up_with_redis`).
REREAD_CHUNK = 2_000

#: Redis writes a follower leaves for the batch's last round trip (queued before progress).
LateWrites = Callable[[Pipeline], None]
Reads = TypeVar("Reads", bound="BatchReads")


class BatchReads(Protocol):
    """What a follower reads of the customers a batch updated, as the batch left them."""

    def queue(self, pipe: Pipeline, customers: Sequence[tuple[str, str]]
              ) -> Callable[[list[Any]], None]:
        """Queue the reads of ``customers`` on ``pipe``; answer what takes the replies (a
        customer read again replaces what was read of them before)."""
        ...


class BatchFollower(Protocol[Reads]):
    """What runs after a batch's features are in Redis and before it is marked done
    (models, alerts): anything it publishes is therefore repeated, never lost, by a crash.

    Its reads of the batch's customers ride on the round trip that applies the batch
    (:meth:`FeatureStore.apply_events`). It may answer writes that nothing in the batch
    waits for: they ride on the round trip that records the batch's progress."""

    def batch_reads(self) -> Reads: ...

    async def on_batch(self, result: BatchResult, pipeline: EventPipeline, reads: Reads
                       ) -> LateWrites | None: ...


class EventPipeline:
    """Turns input micro-batches into features, keeping a watermark per partition."""

    def __init__(
        self,
        *,
        store: FeatureStore,
        dead_letters: DeadLetterPublisher,
        rereads: PartitionReader,
        allowed_lateness_ms: int,
        max_event_bytes: int,
        follower: BatchFollower[Any] | None = None,
        activity_topics: frozenset[str] | None = None,
    ) -> None:
        self.store = store
        self.activity_topics = activity_topics
        self.dead_letters = dead_letters
        self.rereads = rereads
        self.allowed_lateness_ms = allowed_lateness_ms
        self.max_event_bytes = max_event_bytes
        self.follower = follower
        self.max_event_time: dict[tuple[str, int], int] = {}
        self.processed = 0
        # How far each partition got, as this worker knows it: only this worker records
        # progress for a partition it is assigned, so Redis is read once per partition, and
        # again after forget_progress (a rebalance may have let another worker move the
        # partition on meanwhile; a failed batch may or may not have reached Redis).
        self._progress: dict[tuple[str, int], Progress] = {}

    def forget_progress(self) -> None:
        """Read every partition's progress from Redis again (call after a rebalance, and
        before retrying a batch that failed)."""
        self._progress.clear()

    def model_watermark(self) -> int | None:
        """The event time the models may treat as past: the slowest partition seen of the
        ``activity_topics`` (clicks and purchases; every topic when not given).

        A delayed churn label says "no activity within the horizon", so it may resolve only
        once every partition that carries activity has passed its deadline: a replay reads
        topics and partitions at paces of their own, days of event time apart, and a label
        resolved on the fastest one is often wrong. Tickets are left out: too quiet a topic
        would hold time back. Before any activity, the slowest partition of any topic.
        """
        seen = [latest for (topic, _), latest in self.max_event_time.items()
                if self.activity_topics is None or topic in self.activity_topics]
        if not seen:
            seen = list(self.max_event_time.values())
        if not seen:
            return None
        return min(seen) - self.allowed_lateness_ms

    def watermark(self, topic: str, partition: int) -> int | None:
        """Max event time seen on the partition minus the allowed lateness (ms)."""
        latest = self.max_event_time.get((topic, partition))
        return None if latest is None else latest - self.allowed_lateness_ms

    async def process(self, messages: Sequence[RawMessage]) -> BatchResult:
        result = BatchResult()
        if not messages:
            return result
        partitions = {(m.topic, m.partition) for m in messages}
        unknown = [key for key in partitions if key not in self._progress]
        if unknown:
            self._progress.update(await self.store.progress(unknown))
            await self._catch_up_with_redis(unknown, messages)
        result.progress = {key: self._progress[key] for key in partitions}
        await self._restore_watermarks(partitions)

        fresh: list[RawMessage] = []
        for message in messages:
            if message.offset <= result.progress[(message.topic, message.partition)].done:
                result.outcomes[(message.topic, "duplicate")] += 1
            else:
                fresh.append(message)

        valid: list[tuple[RawMessage, AnyEvent]] = []
        seen_at = datetime.now(UTC)
        for message in fresh:
            decoded = decode(message.value, max_bytes=self.max_event_bytes, now=seen_at)
            if isinstance(decoded, Problem):
                self.dead_letters.publish(dead_letter_for(
                    data=message.value, problem=decoded, topic=message.topic,
                    partition=message.partition, offset=message.offset, seen_at=seen_at))
                result.outcomes[(message.topic, "dead_letter")] += 1
                log.info("dead letter %s/%d@%d: %s", message.topic, message.partition,
                         message.offset, decoded.message)
            else:
                valid.append((message, decoded))
        if any(outcome == "dead_letter" for (_, outcome) in result.outcomes):
            await self.dead_letters.flush()

        progress: dict[tuple[str, int], int] = {}
        for message in fresh:
            key = (message.topic, message.partition)
            progress[key] = max(progress.get(key, -1), message.offset)
        # Marked as started only when beyond the mark: the mark never moves back.
        started = {key: offset for key, offset in progress.items()
                   if offset > result.progress[key].started}
        reads = self.follower.batch_reads() if self.follower is not None else None
        with BATCH_STEPS["apply"].time():
            applied = await self.store.apply_events(
                [event for _, event in valid], reads=reads.queue if reads is not None else None,
                started=started if valid else None,
                known_started={key: result.progress[key].started for key in started})
        # An event may be dated up to a day ahead (a shop's clock running fast, see
        # schemas.events.MAX_FUTURE_SKEW); the watermark goes no further than the wall clock,
        # so one such event cannot fire every timer of its partition before its time.
        now_ms = int(seen_at.timestamp() * 1000)
        for (message, event), applied_event in zip(valid, applied, strict=True):
            result.outcomes[(message.topic, applied_event.outcome)] += 1
            result.applied.append((message, event, applied_event))
            key = (message.topic, message.partition)
            self.max_event_time[key] = max(self.max_event_time.get(key, 0),
                                           min(event.occurred_at_ms, now_ms))

        late_writes = None
        if self.follower is not None:
            late_writes = await self.follower.on_batch(result, self, reads)

        watermarks = {
            key: latest - self.allowed_lateness_ms
            for key, latest in self.max_event_time.items() if key in partitions
        }
        with BATCH_STEPS["progress"].time():
            await self.store.commit_batch(
                progress=progress, watermarks=watermarks, outcomes=dict(result.outcomes),
                before=late_writes,
            )
        marked = started if valid else {}
        for key, offset in progress.items():
            before = self._progress[key]
            # The started mark as Redis holds it: a batch of dead letters only records none.
            self._progress[key] = Progress(done=max(before.done, offset),
                                           started=marked.get(key, before.started))
        for (topic, outcome), count in result.outcomes.items():
            EVENTS_PROCESSED.labels(topic=topic, outcome=outcome).inc(count)
        self.processed += len(messages)
        return result

    async def _catch_up_with_redis(self, partitions: Sequence[tuple[str, int]],
                                   messages: Sequence[RawMessage]) -> None:
        """Process what Redis forgot it had processed: the messages of each of
        ``partitions`` between its progress, just read, and the first one delivered now.

        Kafka's committed offset follows Redis's progress (a batch is acked only once it is
        recorded), so the consumer can be past Redis only if Redis lost writes. Then the
        partition's watermark is taken back to Redis's too, as the events re-read move it on
        again. A gap that holds no messages (transaction markers, retention) costs one read.
        """
        first: dict[tuple[str, int], int] = {}
        for message in messages:
            key = (message.topic, message.partition)
            first[key] = min(first.get(key, message.offset), message.offset)
        for key in partitions:
            end = first[key]
            if end <= self._progress[key].done + 1:
                continue
            log.warning("%s/%d: Redis has progress up to offset %d but the consumer delivers "
                        "%d; reading the messages in between again", *key,
                        self._progress[key].done, end)
            self.max_event_time.pop(key, None)
            while end > (done := self._progress[key].done) + 1:
                again = await self.rereads.read(*key, first=done + 1, end=end,
                                                limit=REREAD_CHUNK)
                if not again:
                    break
                await self.process([RawMessage(*key, offset, value) for offset, value in again])

    async def _restore_watermarks(self, partitions: set[tuple[str, int]]) -> None:
        unknown = [key for key in partitions if key not in self.max_event_time]
        if unknown:
            for key, watermark in (await self.store.watermarks(unknown)).items():
                self.max_event_time[key] = watermark + self.allowed_lateness_ms
