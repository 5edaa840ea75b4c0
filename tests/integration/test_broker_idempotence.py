"""The broker drops a produce request an idempotent producer retried: a minimal reproduction.

librdkafka retries a produce request whose answer it did not get (a timeout, a dropped
connection) with the same producer id, epoch and sequence numbers; the broker must then keep
one copy, or the alerts and dead letters of that request would be on the topic twice. This
sends one record batch twice by hand, as such a retry does, and counts what the partition
holds: one record on Apache Kafka (it answers with the first copy's offset) and on the
embedded broker (tansu answers DUPLICATE_SEQUENCE_NUMBER, which librdkafka takes as "previous
send succeeded but was not acknowledged": delivered). So the embedded broker honours the
sequence numbers: repeated alert ids cannot come from producer retries there.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.protocol.types import CompactString, Int16, Int32, Int64, Schema, TaggedFields
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from stream.settings import Settings

DUPLICATE_SEQUENCE_NUMBER = 46


class InitProducerIdResponseV3(Response):
    API_KEY = 22
    API_VERSION = 3
    FLEXIBLE_VERSION = True
    SCHEMA = Schema(("throttle_time_ms", Int32), ("error_code", Int16),
                    ("producer_id", Int64), ("producer_epoch", Int16), ("tags", TaggedFields))


class InitProducerIdRequestV3(RequestStruct):
    """InitProducerId v3, as librdkafka sends it (aiokafka knows v0 only, which tansu
    refuses: it needs the producer id and epoch fields of v3)."""

    API_KEY = 22
    API_VERSION = 3
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = InitProducerIdResponseV3
    SCHEMA = Schema(("transactional_id", CompactString("utf-8")),
                    ("transaction_timeout_ms", Int32), ("producer_id", Int64),
                    ("producer_epoch", Int16), ("tags", TaggedFields))


class InitProducerId(Request[InitProducerIdRequestV3]):
    """A new idempotent (not transactional) producer id."""

    API_KEY = 22

    def build(self, request_struct_class: type[InitProducerIdRequestV3]
              ) -> InitProducerIdRequestV3:
        return request_struct_class(None, 60_000, -1, -1, {})


def record_batch(producer_id: int, epoch: int, sequence: int, value: bytes) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=0, producer_id=producer_id,
        producer_epoch=epoch, base_sequence=sequence, batch_size=1 << 16)
    builder.append(0, timestamp=int(time.time() * 1000), key=b"c-1", value=value, headers=[])
    return bytes(builder.build())


def records_on(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{topic}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values: list[bytes] = []
    deadline = time.monotonic() + 10
    try:  # a little past the expected count, so an extra copy would be seen
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                values.append(message.value() or b"")
                deadline = min(deadline, time.monotonic() + 3) if len(values) >= expected \
                    else deadline
    finally:
        consumer.close()
    return values


async def test_a_retried_idempotent_produce_request_is_kept_once(settings: Settings) -> None:
    """Verify that two batches, each sent twice with its producer id, epoch and sequence
    (the second copy of the first after the second batch, as a retry of an earlier request
    in flight would be), leave two records on the partition, not four."""
    bootstrap = settings.kafka_bootstrap
    topic = f"{settings.topic_prefix}idempotence-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        client.set_topics([topic])
        leader = None
        for _ in range(40):  # a new topic's leader may take a moment to be known
            await client.force_metadata_update()
            leader = client.cluster.leader_for_partition(AioTopicPartition(topic, 0))
            if leader is not None and leader >= 0:
                break
            await asyncio.sleep(0.25)
        assert leader is not None and leader >= 0, f"no leader for {topic}"
        for _ in range(40):  # the coordinator may still be loading
            init: Any = await client.send(client.get_random_node(), InitProducerId())
            if init.error_code == 0:
                break
            await asyncio.sleep(0.25)
        assert init.error_code == 0, init
        answers = []
        for sequence, value in ((0, b"first"), (1, b"second"), (0, b"first"), (1, b"second")):
            batch = record_batch(init.producer_id, init.producer_epoch, sequence, value)
            response: Any = await client.send(
                leader, ProduceRequest(None, -1, 30_000, [(topic, [(0, batch)])]))
            [(_, [(_, error_code, offset, *_)])] = response.topics
            answers.append((error_code, offset))
    finally:
        await client.close()
    assert answers[:2] == [(0, 0), (0, 1)]
    for error_code, offset in answers[2:]:  # the first copy's offset, or "a duplicate"
        assert error_code in (0, DUPLICATE_SEQUENCE_NUMBER)
        assert error_code == DUPLICATE_SEQUENCE_NUMBER or offset in (0, 1)
    assert records_on(bootstrap, topic, expected=2) == [b"first", b"second"]
    print(f"answers to the retried batches: {answers[2:]}")
