"""The Apache Kafka launcher starts a real broker that clients can use, and leaves nothing behind.

Opt-in (``CRM_TEST_KAFKA=apache``) because the first run fetches Kafka from Maven Central and
every run starts a JVM.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stream.apache_kafka import ApacheKafka

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get("CRM_TEST_KAFKA") != "apache",
        reason="set CRM_TEST_KAFKA=apache to run the real Apache Kafka launcher test",
    ),
]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_launcher_round_trip_and_clean_stop() -> None:
    kafka = ApacheKafka()
    bootstrap = kafka.start()
    pid, data_dir = kafka.pid, kafka.data_dir
    assert pid is not None and data_dir is not None and data_dir.is_dir()
    assert bootstrap.startswith("127.0.0.1:") and kafka.bootstrap == bootstrap
    try:
        topic = f"launcher.check.{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
            future.result(timeout=30)

        errors: list[KafkaError] = []
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        for i in range(10):
            producer.produce(topic, key=f"c{i}".encode(), value=f"m{i}".encode(),
                             on_delivery=lambda err, _msg: errors.append(err) if err else None)
        assert producer.flush(30) == 0
        assert errors == []

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        received: list[bytes] = []
        deadline = time.monotonic() + 60
        try:
            while len(received) < 10 and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                assert msg.error() is None, msg.error()
                value = msg.value()
                assert value is not None
                received.append(value)
        finally:
            consumer.close()
        assert received == [f"m{i}".encode() for i in range(10)]
    finally:
        kafka.stop()

    assert not _pid_alive(pid), f"Kafka JVM {pid} survived stop()"
    assert not data_dir.exists(), "temporary data dir was not removed"
    with pytest.raises(RuntimeError):
        _ = kafka.bootstrap
