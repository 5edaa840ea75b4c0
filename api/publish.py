"""Publishing from the API: validated events and erasure requests, on the broker when we answer.

One :class:`stream.producer.EventProducer` per app; each request flushes it (in a thread, so the
event loop keeps serving reads) and fails as a whole if any delivery failed meanwhile. A retry
is safe: workers deduplicate events by ``event_id`` and erasure is idempotent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import anyio

from schemas.events import AnyEvent
from stream.producer import DeliveryError, DeliveryReport, EventProducer
from stream.settings import Settings

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """The broker did not confirm every message of a request."""


class ProducerLike(Protocol):
    report: DeliveryReport

    def send(self, event: AnyEvent) -> object: ...

    def send_raw(self, topic: str, key: str | bytes | None, value: bytes) -> None: ...

    def flush(self, timeout: float = ...) -> DeliveryReport: ...


class Publisher:
    """Send and flush from a worker thread; created lazily so reads never need a broker."""

    def __init__(self, *, settings: Settings, flush_timeout_s: float,
                 producer: ProducerLike | None = None) -> None:
        self.settings = settings
        self.flush_timeout_s = flush_timeout_s
        self._producer = producer
        self._lock = threading.Lock()

    @property
    def producer(self) -> ProducerLike:
        with self._lock:
            if self._producer is None:
                self._producer = EventProducer(settings=self.settings)
            return self._producer

    async def events(self, events: Sequence[AnyEvent]) -> None:
        await anyio.to_thread.run_sync(self._send_events, list(events))

    async def raw(self, topic: str, key: str, value: bytes) -> None:
        await anyio.to_thread.run_sync(self._send_raw, topic, key, value)

    def _send_events(self, events: list[AnyEvent]) -> None:
        producer = self.producer
        for event in events:
            producer.send(event)
        self._flush(producer)

    def _send_raw(self, topic: str, key: str, value: bytes) -> None:
        producer = self.producer
        producer.send_raw(topic, key, value)
        self._flush(producer)

    def _flush(self, producer: ProducerLike) -> None:
        try:
            producer.flush(self.flush_timeout_s)
        except DeliveryError as error:
            # The report counts failures for the producer's lifetime: start a fresh one so
            # one outage does not fail every later request.
            with self._lock:
                producer.report = DeliveryReport()
            log.error("publishing failed: %s", error)
            raise PublishError(str(error)) from error

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.flush(self.flush_timeout_s)
            except DeliveryError as error:
                log.error("undelivered messages at shutdown: %s", error)
