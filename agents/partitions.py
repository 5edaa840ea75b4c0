"""What a worker knows of its input partitions between batches: how far each got, and the
latest event time seen on each (its watermark is that minus the allowed lateness)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agents.decoding import BatchEvent, Partition
from feature_store import FeatureStore, Progress


class Partitions:
    """Progress and event time per partition.

    Only the worker a partition is assigned to records its progress, so Redis is read once
    per partition, and again after :meth:`forget` (a rebalance may have let another worker
    move the partition on meanwhile; a failed batch may or may not have reached Redis).
    """

    def __init__(self, *, allowed_lateness_ms: int,
                 activity_topics: frozenset[str] | None = None) -> None:
        self.allowed_lateness_ms = allowed_lateness_ms
        self.activity_topics = activity_topics
        self.max_event_time: dict[Partition, int] = {}
        self._progress: dict[Partition, Progress] = {}
        self._recorded: dict[Partition, int | None] = {}  # watermarks as Redis last had them

    async def read(self, store: FeatureStore, partitions: Iterable[Partition]
                   ) -> dict[Partition, Progress]:
        """The progress of ``partitions`` as the batch begins (Redis asked only about those
        not known yet)."""
        wanted = set(partitions)
        unknown = [key for key in wanted if key not in self._progress]
        if unknown:
            for key, position in (await store.positions(unknown)).items():
                self._progress[key] = position.progress
                self._recorded[key] = position.watermark
                if position.watermark is not None and key not in self.max_event_time:
                    self.max_event_time[key] = position.watermark + self.allowed_lateness_ms
        return {key: self._progress[key] for key in wanted}

    def unknown(self, partitions: Iterable[Partition]) -> set[Partition]:
        """Those of ``partitions`` whose progress the next :meth:`read` asks Redis for."""
        return {key for key in partitions if key not in self._progress}

    def done_offset(self, key: Partition) -> int:
        """The last offset of ``key`` recorded as done (read it first)."""
        return self._progress[key].done

    def rewind(self, key: Partition) -> None:
        """Take ``key``'s event time back to the watermark Redis holds (it lost writes: the
        events read again move it on again)."""
        recorded = self._recorded.get(key)
        if recorded is None:
            self.max_event_time.pop(key, None)
        else:
            self.max_event_time[key] = recorded + self.allowed_lateness_ms

    def forget(self) -> None:
        """Read every partition's progress from Redis again (call after a rebalance, and
        before retrying a batch that failed)."""
        self._progress.clear()

    def advance(self, events: Iterable[BatchEvent], *, now_ms: int | None = None
                ) -> dict[Partition, int]:
        """Take the events' times in; the watermarks of the partitions they came from.

        An event may be dated up to a day ahead (a shop's clock running fast, see
        ``schemas.events.MAX_FUTURE_SKEW``): the event time goes no further than ``now_ms``
        (the wall clock), so one such event cannot fire every timer of its partition early.
        """
        advanced = set()
        for item in events:
            key = (item.message.topic, item.message.partition)
            at_ms = item.event.occurred_at_ms
            if now_ms is not None:
                at_ms = min(at_ms, now_ms)
            self.max_event_time[key] = max(self.max_event_time.get(key, 0), at_ms)
            advanced.add(key)
        return {key: self.max_event_time[key] - self.allowed_lateness_ms for key in advanced}

    def watermarks(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The watermarks of those of ``partitions`` that have one."""
        return {key: self.max_event_time[key] - self.allowed_lateness_ms
                for key in partitions if key in self.max_event_time}

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

    @staticmethod
    def started(last_offsets: Mapping[Partition, int], progress: Mapping[Partition, Progress]
                ) -> dict[Partition, int]:
        """The batch's offsets to record as started: only beyond the mark (it never moves
        back)."""
        return {key: offset for key, offset in last_offsets.items()
                if offset > progress[key].started}

    def known_started(self, started: Mapping[Partition, int]) -> dict[Partition, int]:
        """The started marks last seen of the partitions in ``started``."""
        return {key: self._progress[key].started for key in started}

    def done(self, last_offsets: Mapping[Partition, int],
             marked: Mapping[Partition, int]) -> None:
        """A batch committed its progress; ``marked``: the started marks it wrote (a batch of
        dead letters only writes none, and the mark kept must be the one Redis holds)."""
        for key, offset in last_offsets.items():
            before = self._progress[key]
            self._progress[key] = Progress(done=max(before.done, offset),
                                           started=marked.get(key, before.started))
