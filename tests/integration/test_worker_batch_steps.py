"""Each micro-batch reports how long it spent in each step, so an operator can tell a batch
that waited (on Redis, on Kafka, on a core) from one that worked, and where."""

from __future__ import annotations

import orjson
from prometheus_client import REGISTRY

from agents.pipeline import RawMessage
from agents.runtime import WorkerRuntime
from schemas.topics import TICKETS
from stream.metrics import BATCH_STEP_NAMES
from tests.unit.support import ticket


def batches_timed(step: str) -> float:
    return REGISTRY.get_sample_value("crm_worker_batch_step_seconds_count",
                                     {"step": step}) or 0.0


async def test_every_batch_is_timed_in_each_of_its_steps(worker_runtime: WorkerRuntime) -> None:
    unhappy = ticket("t1", "c1", minutes=0, status="resolved", csat=1)
    message = RawMessage(worker_runtime.settings.topic(TICKETS), 0, 0, orjson.dumps(
        unhappy.model_dump(mode="json", exclude_none=True)))
    before = {step: batches_timed(step) for step in BATCH_STEP_NAMES}

    await worker_runtime.pipeline.process([message])

    assert worker_runtime.alerts._producer.alerts(), "the batch raised an alert to publish"
    assert {step: batches_timed(step) - before[step] for step in BATCH_STEP_NAMES} == (
        dict.fromkeys(BATCH_STEP_NAMES, 1.0))
