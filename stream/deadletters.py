"""Publish dead letters to ``crm.deadletter``: the original bytes, where they came from, why."""

from __future__ import annotations

import asyncio
import logging

import orjson
from confluent_kafka import KafkaError, Message, Producer

from schemas.records import DeadLetter
from schemas.topics import DEADLETTER
from stream.settings import Settings, kafka_client_config

log = logging.getLogger(__name__)


class DeadLetterPublisher:
    """An idempotent producer for dead letters, flushed once per micro-batch.

    A batch's dead letters are flushed *before* the batch is marked done in Redis, so a crash
    can repeat a dead letter (with the same ``dead_letter_id``) but never lose one.
    """

    def __init__(self, *, settings: Settings) -> None:
        self._producer = Producer({
            **kafka_client_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
        })
        self.failed = 0
        self.topic = settings.topic(DEADLETTER)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failed += 1
            log.error("dead letter for %s could not be delivered: %s", message.key(), error.str())

    def publish(self, dead_letter: DeadLetter) -> None:
        self._producer.produce(
            self.topic,
            key=dead_letter.dead_letter_id,
            value=orjson.dumps(dead_letter.model_dump(mode="json")),
            on_delivery=self._on_delivery,
        )
        self._producer.poll(0)

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until every dead letter is acknowledged by the broker (off the event loop)."""
        remaining = await asyncio.get_running_loop().run_in_executor(
            None, self._producer.flush, timeout
        )
        if remaining or self.failed:
            failed, self.failed = self.failed, 0
            raise RuntimeError(f"{remaining} dead letters unsent, {failed} failed")

    def close(self) -> None:
        self._producer.flush(10)
