"""Fixtures the unit tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from unittest import mock

import pytest

from agents.runtime import WorkerRuntime
from stream.settings import Settings
from tests.unit.test_alert_support import FakeProducer
from tests.unit.test_event_pipeline import NoDeadLetters


@pytest.fixture
async def worker_runtime(redis_url: str, tmp_path: Path) -> AsyncIterator[WorkerRuntime]:
    """A worker's runtime on a real (empty) redis-server with real models; its alert
    producer records, it has no dead letters and no recommender process."""
    settings = Settings(kafka_bootstrap="127.0.0.1:1", redis_url=redis_url,
                        checkpoint_dir=tmp_path, recommender_process=False)
    with mock.patch("agents.runtime.DeadLetterPublisher", lambda settings: NoDeadLetters()), \
            mock.patch("agents.alerting.Producer", lambda config: FakeProducer()):
        worker = WorkerRuntime(settings)
    await worker.redis.flushdb()
    yield worker
    await worker.redis.aclose()
