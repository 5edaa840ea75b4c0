"""Faust's aiokafka transport with the consumer's fetch wait and fetch size from our settings.

Faust builds the worker's ``AIOKafkaConsumer`` with ``fetch_max_wait_ms=1500``, aiokafka's
``fetch_min_bytes=1``, and no setting to change either. Both matter for latency and CPU:

* the embedded broker holds every fetch until the wait runs out, which put up to 1.5 s
  between an event and its alert;
* Apache Kafka answers a fetch as soon as it has ``fetch_min_bytes``: with 1 byte, a few
  records per fetch, so the consumer thread and the agent pay their per-fetch and per-batch
  costs for every few events. A bigger minimum with a short wait makes the broker gather
  records for a few milliseconds instead. On Apache Kafka at 250 events/s, 32 KiB and 10 ms
  took the worker from 2.2 to 1.7 ms of CPU per event (its consumer thread from 15% to 8% of
  a core), and alert p99 at 1,500 events/s from 372 to 87 ms (load_tests/results/ALERTS.md).
  Compressed, 32 KiB is a few hundred events, so up to about 2,000 events/s the wait is
  what makes a batch: 25 rather than 10 ms took the worker from 60% to 48% of a core at
  500 events/s.

This transport sets both before the consumer starts: Faust has no setting for either, so
this is the worker's one subclass of Faust's internals.

(It also used to hand each message to the streams without mode's ``wait_first`` tasks
unless the delivery had to wait. Draining the same backlog alternately with and without
that, after the batch became one linear function, it saved about 6% of the worker's CPU per
event and did not raise its rate, so it was removed.)
"""

from __future__ import annotations

import logging
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)


def transport_for(fetch_max_wait_ms: int, fetch_min_bytes: int = 1
                  ) -> type[faust_aiokafka.Transport]:
    """A Faust transport class whose worker consumers use these fetch options."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            set_fetch_options(consumer, max_wait_ms=fetch_max_wait_ms, min_bytes=fetch_min_bytes)
            return consumer

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


def set_fetch_options(consumer: aiokafka.AIOKafkaConsumer, *, max_wait_ms: int,
                      min_bytes: int) -> None:
    """Set the fetch wait and minimum of a consumer that has not started (its fetcher reads
    them on start)."""
    if not all(hasattr(consumer, name) for name in ("_fetch_max_wait_ms", "_fetch_min_bytes")):
        # An aiokafka that renamed them: say so rather than fail.
        log.warning("cannot set the fetch options on this aiokafka version; using Faust's")
        return
    consumer._fetch_max_wait_ms = max_wait_ms
    consumer._fetch_min_bytes = min_bytes
