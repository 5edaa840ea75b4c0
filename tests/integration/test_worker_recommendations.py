"""A worker with a recommender process hands it the work of many batches at once, on the
recommendations tick, never per batch (a handover costs a batch a liveness check, a queue
put and a feeder thread's wake-up). Real redis-server and models; the process is a double."""

from __future__ import annotations

import orjson
import pytest

from agents.batch import process_batch
from agents.decoding import RawMessage
from agents.recommending import RecommendationWork
from agents.runtime import WorkerRuntime
from tests.unit.support import click


class RecordingRecommender:
    """Stands in for RecommenderProcess: remembers what it was handed."""

    def __init__(self) -> None:
        self.submitted: list[RecommendationWork] = []

    def submit(self, work: RecommendationWork) -> None:
        if work:
            self.submitted.append(work)


@pytest.fixture
def runtime(worker_runtime: WorkerRuntime) -> WorkerRuntime:
    recommender = RecordingRecommender()
    worker_runtime.recommender = recommender  # type: ignore[assignment]
    worker_runtime.worker.lists_in_worker = False
    return worker_runtime


def product_view(offset: int, customer: str, product: str) -> RawMessage:
    event = click(f"e{offset}", customer, minutes=offset, kind="product_view", product=product)
    return RawMessage("crm.clicks", 0, offset, orjson.dumps(
        event.model_dump(mode="json", exclude_none=True)))


async def test_batches_hand_the_recommender_nothing_and_the_tick_hands_all_their_work(
        runtime: WorkerRuntime) -> None:
    recommender: RecordingRecommender = runtime.recommender  # type: ignore[assignment]
    await process_batch(runtime.worker, [product_view(0, "c1", "p1"),
                                         product_view(1, "c2", "p2")])
    await process_batch(runtime.worker, [product_view(2, "c1", "p3")])
    assert recommender.submitted == []

    await runtime.write_due_recommendations()

    (work,) = recommender.submitted
    assert [(i.customer_id, i.products) for i in work.interactions] == [
        ("c1", ("p1",)), ("c2", ("p2",)), ("c1", ("p3",))]
    assert set(work.due) == {("default", "c1"), ("default", "c2")}
    await runtime.write_due_recommendations()
    assert len(recommender.submitted) == 1, "nothing new: nothing handed over"
