"""A worker with a recommender process hands it the work of many batches at once, on the
recommendations tick, never per batch (a handover costs a batch a liveness check, a queue
put and a feeder thread's wake-up). Real redis-server and models; the process is a double."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from unittest import mock

import orjson
import pytest

from agents.pipeline import RawMessage
from agents.recommending import RecommendationWork
from agents.runtime import WorkerRuntime
from stream.settings import Settings
from tests.unit.test_alert_support import FakeProducer, click
from tests.unit.test_event_pipeline import NoDeadLetters


class RecordingRecommender:
    """Stands in for RecommenderProcess: remembers what it was handed."""

    def __init__(self) -> None:
        self.submitted: list[RecommendationWork] = []

    def submit(self, work: RecommendationWork) -> None:
        if work:
            self.submitted.append(work)


@pytest.fixture
async def runtime(redis_url: str, tmp_path: Path) -> AsyncIterator[WorkerRuntime]:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", redis_url=redis_url,
                        checkpoint_dir=tmp_path, recommender_process=False)
    with mock.patch("agents.runtime.DeadLetterPublisher", lambda settings: NoDeadLetters()), \
            mock.patch("agents.alerting.Producer", lambda config: FakeProducer()):
        worker = WorkerRuntime(settings)
    await worker.redis.flushdb()
    recommender = RecordingRecommender()
    worker.recommender = recommender  # type: ignore[assignment]
    worker.pipeline.follower.recommender = recommender  # type: ignore[union-attr]
    yield worker
    await worker.redis.aclose()


def product_view(offset: int, customer: str, product: str) -> RawMessage:
    event = click(f"e{offset}", customer, minutes=offset, kind="product_view", product=product)
    return RawMessage("crm.clicks", 0, offset, orjson.dumps(
        event.model_dump(mode="json", exclude_none=True)))


async def test_batches_hand_the_recommender_nothing_and_the_tick_hands_all_their_work(
        runtime: WorkerRuntime) -> None:
    recommender: RecordingRecommender = runtime.recommender  # type: ignore[assignment]
    await runtime.pipeline.process([product_view(0, "c1", "p1"), product_view(1, "c2", "p2")])
    await runtime.pipeline.process([product_view(2, "c1", "p3")])
    assert recommender.submitted == []

    await runtime.write_due_recommendations()

    (work,) = recommender.submitted
    assert [(i.customer_id, i.products) for i in work.interactions] == [
        ("c1", ("p1",)), ("c2", ("p2",)), ("c1", ("p3",))]
    assert set(work.due) == {("default", "c1"), ("default", "c2")}
    await runtime.write_due_recommendations()
    assert len(recommender.submitted) == 1, "nothing new: nothing handed over"
