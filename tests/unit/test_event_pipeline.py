"""The pipeline reads a partition's progress once, then keeps it in step itself.

Only the worker a partition is assigned to records its progress, so one read per partition
is enough until a rebalance, after which another worker may have moved it on.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
import pytest

from agents.pipeline import EventPipeline, RawMessage
from feature_store import FeatureStore
from schemas.records import DeadLetter
from tests.unit.test_alert_support import click

TOPIC = "crm.clicks"


class NoDeadLetters:
    """The events below are all valid: publishing one is a failure of the test."""

    def publish(self, dead_letter: DeadLetter) -> None:
        raise AssertionError(f"unexpected dead letter: {dead_letter}")

    async def flush(self, timeout: float = 30.0) -> None:
        return None


class CountingStore(FeatureStore):
    """The real store, counting the partitions whose progress it was asked for."""

    progress_reads: list[tuple[str, int]]

    async def progress(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        partitions = list(partitions)
        self.progress_reads = [*getattr(self, "progress_reads", []), *partitions]
        return await super().progress(partitions)


def message(offset: int, event_id: str, partition: int = 0) -> RawMessage:
    event = click(event_id, "c1", minutes=offset).model_dump(mode="json", exclude_none=True)
    return RawMessage(TOPIC, partition, offset, orjson.dumps(event))


@pytest.fixture
def pipeline(store: FeatureStore) -> EventPipeline:
    counting = CountingStore(redis=store.redis)
    counting.progress_reads = []
    return EventPipeline(store=counting, dead_letters=NoDeadLetters(),  # type: ignore[arg-type]
                         allowed_lateness_ms=0, max_event_bytes=65_536)


def reads(pipeline: EventPipeline) -> list[tuple[str, int]]:
    return pipeline.store.progress_reads  # type: ignore[attr-defined,no-any-return]


async def test_progress_is_read_once_per_partition(pipeline: EventPipeline) -> None:
    await pipeline.process([message(0, "e0"), message(0, "f0", partition=1)])
    await pipeline.process([message(1, "e1"), message(1, "f1", partition=1)])
    assert sorted(reads(pipeline)) == [(TOPIC, 0), (TOPIC, 1)]


async def test_a_redelivered_batch_is_skipped_without_asking_redis(
        pipeline: EventPipeline) -> None:
    batch = [message(0, "e0"), message(1, "e1")]
    await pipeline.process(batch)
    again = await pipeline.process(batch)
    assert again.outcomes == {(TOPIC, "duplicate"): 2}
    assert reads(pipeline) == [(TOPIC, 0)]


async def test_after_a_rebalance_progress_another_worker_recorded_is_respected(
        pipeline: EventPipeline) -> None:
    await pipeline.process([message(0, "e0")])
    # Meanwhile the partition was another worker's, which processed offsets 1 and 2.
    await pipeline.store.commit_batch(progress={(TOPIC, 0): 2}, watermarks={}, outcomes={})
    pipeline.forget_progress()
    redelivered = await pipeline.process([message(1, "e1"), message(2, "e2"), message(3, "e3")])
    assert redelivered.outcomes == {(TOPIC, "duplicate"): 2, (TOPIC, "ok"): 1}
    assert reads(pipeline) == [(TOPIC, 0), (TOPIC, 0)]


async def test_a_followers_late_writes_are_recorded_with_the_batch(
        pipeline: EventPipeline) -> None:
    class Follower:
        async def on_batch(self, result: object, pipeline: EventPipeline) -> object:
            def write(pipe: object) -> None:
                pipe.set("late", "written")  # type: ignore[attr-defined]
            return write

    pipeline.follower = Follower()  # type: ignore[assignment]
    await pipeline.process([message(0, "e0")])
    assert await pipeline.store.redis.get("late") == b"written"
