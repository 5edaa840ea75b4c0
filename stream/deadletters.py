"""Publish dead letters to ``crm.deadletter``: the original bytes, where they came from, why."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import orjson
from confluent_kafka import KafkaError, Message, Producer

from schemas.records import DeadLetter
from schemas.topics import DEADLETTER
from stream.delivered import DeliveredIds
from stream.settings import Settings, kafka_client_config

log = logging.getLogger(__name__)

#: How many dead letter ids the broker acknowledged a publisher remembers (a batch holds at
#: most a few hundred).
ACKNOWLEDGED_IDS = 10_000


class DeadLetterPublisher:
    """An idempotent producer for dead letters, flushed once per micro-batch.

    A batch's dead letters are flushed *before* the batch is marked done in Redis, so a crash
    can repeat a dead letter (with the same ``dead_letter_id``) but never lose one. A batch
    retried in the same process (a Redis round trip failed after the flush) does not produce
    the dead letters the broker acknowledged to this publisher again.
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
        self._pending: list[str] = []
        self._acknowledged = DeliveredIds(ACKNOWLEDGED_IDS)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failed += 1
            log.error("dead letter for %s could not be delivered: %s", message.key(), error.str())

    def publish(self, dead_letter: DeadLetter) -> None:
        if dead_letter.dead_letter_id in self._acknowledged:
            return
        self._pending.append(dead_letter.dead_letter_id)
        self._producer.produce(
            self.topic,
            key=dead_letter.dead_letter_id,
            value=orjson.dumps(dead_letter.model_dump(mode="json")),
            on_delivery=self._on_delivery,
        )
        self._producer.poll(0)

    async def publish_all(self, dead_letters: Sequence[DeadLetter]) -> None:
        """Publish a batch's dead letters and wait until the broker has them all."""
        if not dead_letters:
            return
        for dead_letter in dead_letters:
            self.publish(dead_letter)
        await self.flush()

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until every dead letter is acknowledged by the broker (off the event loop)."""
        remaining = await asyncio.get_running_loop().run_in_executor(
            None, self._producer.flush, timeout
        )
        if remaining or self.failed:
            failed, self.failed, self._pending = self.failed, 0, []
            raise RuntimeError(f"{remaining} dead letters unsent, {failed} failed")
        for dead_letter_id in self._pending:
            self._acknowledged.add(dead_letter_id)
        self._pending = []

    def close(self) -> None:
        self._producer.flush(10)
