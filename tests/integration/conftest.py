"""Fixtures of the integration tests, on the session's broker and redis-server
(``tests/conftest.py``): the API as a process, the API app in this process, a worker's
runtime."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from unittest import mock

import httpx
import pytest
import redis.asyncio as aioredis

from agents.runtime import WorkerRuntime
from api.main import create_app
from api.settings import ApiSettings
from stream.settings import Settings
from tests.integration.support import (
    Api,
    ApiServer,
    FakeProducer,
    NoDeadLetters,
    OwnRedis,
    start_api,
)
from tests.unit.support import FakeAlertProducer


@pytest.fixture
def api_server(settings: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    """``uvicorn api.main:create_app`` on a free port, with a key for every scope."""
    server = start_api(settings, tmp_path / "api.log")
    yield server
    server.process.stop(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A redis-server of this test's own, which it may kill, restart or pause."""
    server = OwnRedis(tmp_path / "own-redis")
    yield server
    server.stop()


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[Api]:
    """The API app called in this process (no HTTP server) on an emptied database of the
    session's redis-server; what it publishes goes to a fake producer."""
    settings = Settings(redis_url=redis_url, kafka_bootstrap="127.0.0.1:1",
                        topic_prefix=f"u{uuid.uuid4().hex[:6]}.")
    redis = aioredis.Redis.from_url(redis_url)
    await redis.flushdb()
    producer = FakeProducer()
    app = create_app(settings, ApiSettings(api_rate_limit=1000, api_sse_heartbeat_s=0.2,
                                           api_broker_check_timeout_s=0.5),
                     redis=redis, producer=producer)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield Api(client=client, redis=redis, producer=producer, app=app, settings=settings)
    await redis.aclose()


@pytest.fixture
async def worker_runtime(redis_url: str, tmp_path: Path) -> AsyncIterator[WorkerRuntime]:
    """A worker's runtime on a real (empty) redis-server with real models; its alert
    producer records, it has no dead letters and no recommender process."""
    settings = Settings(kafka_bootstrap="127.0.0.1:1", redis_url=redis_url,
                        checkpoint_dir=tmp_path, recommender_process=False)
    with mock.patch("agents.runtime.DeadLetterPublisher", lambda settings: NoDeadLetters()), \
            mock.patch("agents.publishing.Producer", lambda config: FakeAlertProducer()):
        worker = WorkerRuntime(settings)
    await worker.store.redis.flushdb()
    yield worker
    await worker.store.close()
