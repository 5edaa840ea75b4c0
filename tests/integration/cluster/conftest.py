"""Fixtures of the cluster tests: a three-broker Apache Kafka (KRaft, replication factor 3,
``min.insync.replicas`` 2) and a Redis Cluster (three masters, a replica each), both started
here once per session, and settings that point every deployable at them.

The tests run only with ``CRM_TEST_CLUSTER=1`` (``.ci/run`` sets it; they need Java 17 and
Maven). Each test gets its own topics and consumer group, an emptied cluster, and starts with
every broker and every Redis node up, whatever the test before it killed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from feature_store.client import connect_sync
from stream.apache_kafka import ApacheKafka
from stream.devstack import LocalRedisCluster
from stream.settings import Settings
from stream.topics import create_topics

#: Heap of each broker: three JVMs share this 2-core machine with everything else.
BROKER_HEAP_MB = 512


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    kafka = ApacheKafka(data_dir=tmp_path_factory.mktemp("kafka-cluster"), brokers=3,
                        heap_mb=BROKER_HEAP_MB, start_timeout=180)
    kafka.start()
    yield kafka
    kafka.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_cluster: ApacheKafka) -> str:
    return kafka_cluster.bootstrap


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster(work_dir=tmp_path_factory.mktemp("redis"), node_timeout_ms=2000)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_url(redis_cluster: LocalRedisCluster) -> str:
    return redis_cluster.url


@pytest.fixture
def settings(kafka_cluster: ApacheKafka, redis_cluster: LocalRedisCluster) -> Settings:
    """Settings for one test on the cluster pair: fresh topics (replication factor 3) under a
    unique prefix, an empty Redis Cluster, the cluster client, WAIT for one replica."""
    for node_id in range(1, 4):
        kafka_cluster.start_broker(node_id)  # nothing if it runs
    redis_cluster.restart_stopped()
    redis_cluster.wait_until_healthy(timeout=60)
    test_id = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=kafka_cluster.bootstrap,
        redis_url=redis_cluster.url,
        redis_cluster=True,
        redis_wait_replicas=1,
        replication_factor=3,
        topic_prefix=f"t{test_id}.",
        app_id=f"crm-test-{test_id}",
        partitions=4,
        session_timeout_s=6.0,
        checkpoint_dir=Path(f"/tmp/crm-test-checkpoints/{test_id}"),
    )
    client = connect_sync(settings.redis_url, cluster=True)
    try:
        client.flushdb()  # every master
    finally:
        client.close()
    create_topics(settings)
    return settings
