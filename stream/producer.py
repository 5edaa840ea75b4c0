"""The producer SDK for shops: validate, key by customer, deliver idempotently.

confluent-kafka's idempotent producer (``enable.idempotence``) means a retried send never
writes a duplicate; every event is validated before it leaves the shop, so bad input is
caught where it can still be fixed. Delivery failures are counted and reported, never lost
silently. This module never imports faust, so the API process stays light.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from schemas.events import AnyEvent, topic_for, validate_event
from stream.settings import Settings, kafka_client_config

log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """Raised by :meth:`EventProducer.flush` when some events could not be delivered."""


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class EventProducer:
    """Send validated events to their input topic, keyed by ``customer_id``.

    Use as a context manager; ``flush()`` raises :class:`DeliveryError` if any send failed.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        settings = settings or Settings()
        config: dict[str, Any] = {
            **kafka_client_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
        }
        config.update(extra_config or {})
        self._producer = Producer(config)
        self.settings = settings
        self._lock = threading.Lock()
        self.report = DeliveryReport()

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        with self._lock:
            if error is None:
                self.report.delivered += 1
            else:
                self.report.failed += 1
                if len(self.report.errors) < 100:
                    self.report.errors.append(f"{message.topic()}: {error.str()}")
                log.error("delivery to %s failed: %s", message.topic(), error.str())

    def send(self, event: AnyEvent | Mapping[str, Any]) -> AnyEvent:
        """Validate (if given a mapping) and enqueue one event; returns the typed event."""
        typed = event if isinstance(event, AnyEvent) else (
            validate_event(event)
        )
        payload = orjson.dumps(typed.model_dump(mode="json", exclude_none=True))
        self.send_raw(self.settings.topic(topic_for(typed)), typed.partition_key, payload)
        return typed

    def send_raw(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        *,
        on_delivered: Callable[[str, int, int], None] | None = None,
    ) -> None:
        """Enqueue already-encoded bytes (for replays, load tests and dead-letter fixtures).

        ``on_delivered(topic, partition, offset)`` is called once the broker has the message.
        """
        callback = self._on_delivery
        if on_delivered is not None:
            def callback(error: KafkaError | None, message: Message) -> None:
                self._on_delivery(error, message)
                if error is None:
                    on_delivered(message.topic() or topic, message.partition() or 0,
                                 message.offset() or 0)
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=callback)
                break
            except BufferError:
                # The local queue is full: let the network catch up, then retry.
                self._producer.poll(0.05)
        self._producer.poll(0)

    def send_many(self, events: Iterable[AnyEvent | Mapping[str, Any]]) -> int:
        count = 0
        for event in events:
            self.send(event)
            count += 1
        return count

    def flush(self, timeout: float = 30.0) -> DeliveryReport:
        """Wait for every queued event; raise :class:`DeliveryError` if any failed."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise DeliveryError(f"{remaining} events still queued after {timeout:.0f}s")
        if self.report.failed:
            raise DeliveryError(
                f"{self.report.failed} events failed delivery: {self.report.errors[:3]}"
            )
        return self.report

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()
