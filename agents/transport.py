"""Faust's aiokafka transport with the consumer's fetch wait taken from our settings.

Faust builds the worker's ``AIOKafkaConsumer`` with ``fetch_max_wait_ms=1500`` and no setting
to change it. On Apache Kafka that is harmless (a fetch returns as soon as data arrives), but
the embedded broker holds every fetch until the wait runs out, which put up to 1.5 s between
an event and its alert. This transport lowers the wait before the consumer starts.
"""

from __future__ import annotations

import logging
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)


def transport_for(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    """A Faust transport class whose worker consumers wait at most ``fetch_max_wait_ms``."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            set_fetch_max_wait(consumer, fetch_max_wait_ms)
            return consumer

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


def set_fetch_max_wait(consumer: aiokafka.AIOKafkaConsumer, fetch_max_wait_ms: int) -> None:
    """Set the fetch wait of a consumer that has not started (its fetcher reads it on start)."""
    if not hasattr(consumer, "_fetch_max_wait_ms"):  # an aiokafka that renamed it: say so
        log.warning("cannot set fetch_max_wait_ms on this aiokafka version; using Faust's")
        return
    consumer._fetch_max_wait_ms = fetch_max_wait_ms
