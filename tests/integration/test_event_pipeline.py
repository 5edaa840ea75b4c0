"""The pipeline reads a partition's progress once, then keeps it in step itself.

Only the worker a partition is assigned to records its progress, so one read per partition
is enough until a rebalance, after which another worker may have moved it on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import pytest
from redis.asyncio.client import Pipeline

from agents.pipeline import EventPipeline, RawMessage
from feature_store import FeatureStore
from feature_store.keys import CustomerKeys
from tests.integration.support import NoDeadLetters, NoRereads
from tests.unit.support import click

TOPIC = "crm.clicks"


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
                         rereads=NoRereads(),  # type: ignore[arg-type]
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


class ProfileReads:
    """A follower's reads: each customer's profile hash, as the batch left it."""

    def __init__(self) -> None:
        self.profiles: dict[tuple[str, str], dict[bytes, bytes]] = {}

    def queue(self, pipe: Pipeline, customers: Sequence[tuple[str, str]]
              ) -> Callable[[list[Any]], None]:
        start = len(pipe.command_stack)
        for tenant, customer in customers:
            pipe.hgetall(CustomerKeys(tenant, customer).profile)

        def take(replies: list[Any]) -> None:
            for customer, profile in zip(customers, replies[start:], strict=False):
                self.profiles[customer] = profile

        return take


class RecordingFollower:
    """Keeps what it read of each batch; leaves one late write."""

    def __init__(self) -> None:
        self.read: list[dict[tuple[str, str], dict[bytes, bytes]]] = []

    def batch_reads(self) -> ProfileReads:
        return ProfileReads()

    async def on_batch(self, result: object, pipeline: EventPipeline, reads: ProfileReads
                       ) -> Callable[[Pipeline], None]:
        self.read.append(reads.profiles)

        def write(pipe: Pipeline) -> None:
            pipe.set("late", "written")

        return write


async def test_a_followers_late_writes_are_recorded_with_the_batch(
        pipeline: EventPipeline) -> None:
    pipeline.follower = RecordingFollower()
    await pipeline.process([message(0, "e0")])
    assert await pipeline.store.redis.get("late") == b"written"


async def test_a_follower_reads_its_customers_as_the_batch_left_them(
        pipeline: EventPipeline) -> None:
    follower = pipeline.follower = RecordingFollower()
    await pipeline.process([message(0, "e0"), message(1, "e1")])
    await pipeline.process([message(2, "e2")])
    assert [read[("default", "c1")][b"views"] for read in follower.read] == [b"2", b"3"]


async def test_after_a_stitch_a_follower_reads_the_merged_customer_and_no_visitor(
        pipeline: EventPipeline) -> None:
    """A visitor's browsing and their login in one batch: the merge runs after the batch's
    round trip, so what the follower read there of both is read again."""
    follower = pipeline.follower = RecordingFollower()
    browse = [{"event_id": f"a{n}", "anonymous_id": "v1", "type": "click",
               "kind": "product_view", "product_id": f"p{n}",
               "occurred_at": f"2026-04-01T10:0{n}:00Z"} for n in range(3)]
    login = {"event_id": "login", "customer_id": "c9", "anonymous_id": "v1", "type": "click",
             "kind": "page_view", "occurred_at": "2026-04-01T10:05:00Z"}
    await pipeline.process([RawMessage(TOPIC, 0, offset, orjson.dumps(event))
                            for offset, event in enumerate([*browse, login])])
    (read,) = follower.read
    assert read[("default", "anon:v1")] == {}
    assert read[("default", "c9")][b"views"] == b"4"
    assert read[("default", "c9")][b"product_views"] == b"3"
