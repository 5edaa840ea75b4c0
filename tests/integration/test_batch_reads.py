"""The batch on a real redis-server: a partition's progress is read once, then kept in step;
the store answers the batch's customers as the batch left them, stitched visitors merged."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from agents.batch import process_batch
from agents.decoding import RawMessage
from agents.runtime import WorkerRuntime
from feature_store import CartSweep, Commit, FeatureStore, Position
from schemas.events import validate_event
from tests.unit.support import click

TOPIC = "crm.clicks"


def message(offset: int, event_id: str, partition: int = 0) -> RawMessage:
    event = click(event_id, "c1", minutes=offset).model_dump(mode="json", exclude_none=True)
    return RawMessage(TOPIC, partition, offset, orjson.dumps(event))


@pytest.fixture
def reads(worker_runtime: WorkerRuntime, monkeypatch: pytest.MonkeyPatch
          ) -> list[tuple[str, int]]:
    """The partitions whose position the worker asked the store for."""
    asked: list[tuple[str, int]] = []
    store = worker_runtime.store
    real = store.positions

    async def counting(partitions: Iterable[tuple[str, int]]) -> dict[Any, Position]:
        partitions = list(partitions)
        asked.extend(partitions)
        return await real(partitions)

    monkeypatch.setattr(store, "positions", counting)
    return asked


async def test_progress_is_read_once_per_partition(worker_runtime: WorkerRuntime,
                                                   reads: list[tuple[str, int]]) -> None:
    worker = worker_runtime.worker
    await process_batch(worker, [message(0, "e0"), message(0, "f0", partition=1)])
    await process_batch(worker, [message(1, "e1"), message(1, "f1", partition=1)])
    assert sorted(reads) == [(TOPIC, 0), (TOPIC, 1)]


async def test_a_redelivered_batch_is_skipped_without_asking_redis(
        worker_runtime: WorkerRuntime, reads: list[tuple[str, int]]) -> None:
    batch = [message(0, "e0"), message(1, "e1")]
    await process_batch(worker_runtime.worker, batch)
    again = await process_batch(worker_runtime.worker, batch)
    assert again.outcomes == {(TOPIC, "duplicate"): 2}
    assert reads == [(TOPIC, 0)]


async def test_after_a_rebalance_progress_another_worker_recorded_is_respected(
        worker_runtime: WorkerRuntime, reads: list[tuple[str, int]]) -> None:
    worker = worker_runtime.worker
    await process_batch(worker, [message(0, "e0")])
    # Meanwhile the partition was another worker's, which processed offsets 1 and 2.
    await worker_runtime.store.commit(Commit(progress={(TOPIC, 0): 2}))
    worker.partitions.forget()
    redelivered = await process_batch(worker, [message(1, "e1"), message(2, "e2"),
                                               message(3, "e3")])
    assert redelivered.outcomes == {(TOPIC, "duplicate"): 2, (TOPIC, "ok"): 1}
    assert reads == [(TOPIC, 0), (TOPIC, 0)]


async def test_the_store_answers_each_customer_as_the_batch_left_them(
        store: FeatureStore) -> None:
    first = await store.apply([click("e0", "c1", 0), click("e1", "c1", 1)], started={},
                              carts=CartSweep())
    second = await store.apply([click("e2", "c1", 2)], started={}, carts=CartSweep())
    assert [applied.customers[("default", "c1")].profile["views"]
            for applied in (first, second)] == [2, 3]


async def test_after_a_stitch_the_merged_customer_is_answered_and_no_visitor(
        store: FeatureStore) -> None:
    """A visitor's browsing and their login in one batch: the merge runs after the batch's
    round trip, so both are read again after it."""
    browse = [{"event_id": f"a{n}", "anonymous_id": "v1", "type": "click",
               "kind": "product_view", "product_id": f"p{n}",
               "occurred_at": f"2026-04-01T10:0{n}:00Z"} for n in range(3)]
    login = {"event_id": "login", "customer_id": "c9", "anonymous_id": "v1", "type": "click",
             "kind": "page_view", "occurred_at": "2026-04-01T10:05:00Z"}
    applied = await store.apply([validate_event(e) for e in [*browse, login]], started={},
                                carts=CartSweep())
    assert ("default", "anon:v1") not in applied.customers
    customer = applied.customers[("default", "c9")]
    assert (customer.profile["views"], customer.profile["product_views"]) == (4, 3)
    assert set(customer.profile["recent_products"]) == {"p0", "p1", "p2"}
