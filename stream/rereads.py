"""Read a partition again by offset: the worker's way back to events Redis forgot.

A partition's progress lives in Redis; Kafka's committed offset only says where a consumer
resumes. When Redis loses its last writes (restarted from an append-only file whose last
second never reached the disk, a replica promoted behind its primary), its progress goes
back while the consumer, and its committed offset, are already past: the events in between
were applied to a Redis that forgot them, and no consumer would deliver them again. The
pipeline (:mod:`agents.pipeline`) finds such a gap whenever it reads a partition's progress
and reads the gap from the broker here, with a plain consumer of its own that joins no
group and commits nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from stream.settings import Settings, kafka_client_config


class PartitionReadError(RuntimeError):
    """The broker did not hand over the messages asked for in time; try again later."""


class PartitionReader:
    """Messages of one partition from an offset on, read in a thread off the event loop.

    One consumer, made on first use and kept; reads take turns (a read whose caller gave up
    waiting still finishes before the next starts).
    """

    def __init__(self, *, settings: Settings, timeout_s: float = 20.0) -> None:
        self._config = {
            **kafka_client_config(settings),
            # librdkafka wants a group even for assigned partitions; nothing is committed.
            "group.id": f"{settings.app_id}.rereads",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
        self.timeout_s = timeout_s
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()

    async def read(self, topic: str, partition: int, *, first: int, end: int,
                   limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` (offset, value) pairs of ``topic``/``partition`` at offsets from
        ``first`` (or the oldest kept, if retention removed it) and below ``end``."""
        return await asyncio.to_thread(self._read, topic, partition, first, end, limit)

    def _read(self, topic: str, partition: int, first: int, end: int,
              limit: int) -> list[tuple[int, bytes]]:
        with self._lock:
            if self._consumer is None:
                self._consumer = Consumer(self._config)
            consumer = self._consumer
            consumer.assign([TopicPartition(topic, partition, max(first, 0))])
            try:
                return self._until(consumer, end, limit)
            finally:
                consumer.unassign()

    def _until(self, consumer: Consumer, end: int, limit: int) -> list[tuple[int, bytes]]:
        found: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + self.timeout_s
        while len(found) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PartitionReadError(f"no messages from the broker within {self.timeout_s:g} s")
            for message in consumer.consume(min(500, limit - len(found)), min(1.0, remaining)):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return found
                    raise PartitionReadError(str(KafkaException(error)))
                offset = message.offset() or 0  # always set on a consumed message
                if offset >= end:
                    return found
                found.append((offset, message.value() or b""))
        return found

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
