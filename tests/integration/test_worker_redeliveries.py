"""An alert once per trigger, through the worker's runtime on a real redis-server: a
redelivered message is judged again (its alert repeated with the same id, never lost), an
event id the shop sent twice counts once (no second alert)."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import orjson
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from agents.batch import process_batch
from agents.decoding import RawMessage
from agents.publishing import ALERTS_REPEATED
from agents.runtime import WorkerRuntime
from feature_store.keys import progress_key
from feature_store.reads import SystemReader
from schemas.topics import TICKETS
from stream.settings import Settings
from tests.integration.support import NoDeadLetters
from tests.unit.support import FakeAlertProducer, ticket


def unhappy_ticket(runtime: WorkerRuntime, offset: int) -> RawMessage:
    """The same event (id ``t1``, an alert's trigger) at ``offset`` of tickets partition 0."""
    event = ticket("t1", "c1", minutes=0, status="resolved", csat=1)
    return RawMessage(runtime.settings.topic(TICKETS), 0, offset,
                      orjson.dumps(event.model_dump(mode="json", exclude_none=True)))


def produced(runtime: WorkerRuntime) -> list[str]:
    producer: FakeAlertProducer = runtime.worker.alerts._producer
    return [alert.alert_id for alert in producer.alerts()]


def restarted(runtime: WorkerRuntime, tmp_path: Path) -> WorkerRuntime:
    """A new worker on the same Redis, as after a crash: nothing in memory carries over."""
    settings = Settings(kafka_bootstrap="127.0.0.1:1", redis_url=runtime.settings.redis_url,
                        checkpoint_dir=tmp_path / "restarted", recommender_process=False)
    with mock.patch("agents.runtime.DeadLetterPublisher", lambda settings: NoDeadLetters()), \
            mock.patch("agents.publishing.Producer", lambda config: FakeAlertProducer()):
        return WorkerRuntime(settings)


def failing_commit(runtime: WorkerRuntime) -> mock._patch[mock.AsyncMock]:
    return mock.patch.object(runtime.store, "commit",
                             mock.AsyncMock(side_effect=RedisConnectionError("gone")))


async def test_an_event_the_shop_sent_twice_raises_its_alert_once(
        worker_runtime: WorkerRuntime) -> None:
    """Verify that a re-sent event, in a later batch or in the same one, fires no alert."""
    worker = worker_runtime.worker
    first = await process_batch(worker, [unhappy_ticket(worker_runtime, 0)])
    later = await process_batch(worker, [unhappy_ticket(worker_runtime, 1)])
    both = await process_batch(worker, [unhappy_ticket(worker_runtime, 2),
                                        unhappy_ticket(worker_runtime, 3)])
    assert len(produced(worker_runtime)) == 1
    assert not any(report.redelivered for report in (first, later, both))
    topic = worker_runtime.settings.topic(TICKETS)
    assert later.outcomes == {(topic, "duplicate"): 1}


async def test_a_batch_retried_after_its_commit_failed_alerts_once(
        worker_runtime: WorkerRuntime) -> None:
    """Verify that a batch retried in the same worker is a redelivery: its alert is not
    produced again, its feed and progress are written once the retry succeeds."""
    message = unhappy_ticket(worker_runtime, 0)
    with failing_commit(worker_runtime), pytest.raises(RedisConnectionError):
        await process_batch(worker_runtime.worker, [message])
    assert len(produced(worker_runtime)) == 1
    worker_runtime.batch_failed()
    retried = await process_batch(worker_runtime.worker, [message])
    assert retried.redelivered == [message]
    assert len(produced(worker_runtime)) == 1
    redis = worker_runtime.store.redis
    assert int(await redis.get(progress_key(message.topic, 0))) == 0
    feed = await SystemReader(redis=redis).alerts("default")
    assert [alert.alert_id for alert in feed] == produced(worker_runtime)


async def test_after_a_crash_the_redelivered_trigger_repeats_its_alert(
        worker_runtime: WorkerRuntime, tmp_path: Path) -> None:
    """Verify that a worker restarted after a crash before the commit repeats the alert
    (same id and content, counted as repeated) and a later re-send fires nothing."""
    message = unhappy_ticket(worker_runtime, 0)
    with failing_commit(worker_runtime), pytest.raises(RedisConnectionError):
        await process_batch(worker_runtime.worker, [message])
    [alert_id] = produced(worker_runtime)
    repeated = ALERTS_REPEATED.labels(kind="negative_ticket")
    before = repeated._value.get()

    worker = restarted(worker_runtime, tmp_path)
    try:
        redelivered = await process_batch(worker.worker, [message])
        await process_batch(worker.worker, [unhappy_ticket(worker, 1)])  # the shop re-sends
    finally:
        await worker.store.close()

    assert redelivered.redelivered == [message]
    assert produced(worker) == [alert_id]
    assert (worker.worker.alerts._producer.alerts()  # type: ignore[attr-defined]
            == worker_runtime.worker.alerts._producer.alerts())  # type: ignore[attr-defined]
    assert repeated._value.get() == before + 1
