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

This transport sets both before the consumer starts.

It also takes a fixed cost off every message. Faust's drain loop hands each message to the
streams with ``wait_first(deliver(message), suspend_flow.wait())``, so that a delivery held
up by a full buffer is dropped if a rebalance suspends the flow meanwhile. mode's
``wait_first`` makes four tasks and an ``asyncio.wait`` for that: about 40 µs a message,
5% of a worker at 1,000 events/s, though a delivery almost never waits. This consumer
first runs the delivery up to its first wait, and races it only if it has one (see
:func:`wait_first_eagerly`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitArgT, WaitResults

log = logging.getLogger(__name__)

#: mode's ``Service.wait_first``: the first of the coroutines or events to finish wins.
Race = Callable[..., Awaitable[WaitResults]]


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

        async def wait_first(self, *coros: WaitArgT, timeout: Any = None
                             ) -> WaitResults:
            race = super().wait_first
            if self.suspend_flow.is_set():  # a rebalance: no delivery may start now
                return await race(*coros, timeout=timeout)
            return await wait_first_eagerly(race, *coros, timeout=timeout)

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


async def wait_first_eagerly(race: Race, *coros: WaitArgT, timeout: Any = None) -> WaitResults:
    """``race(*coros)`` (mode's ``Service.wait_first``), except that a first coroutine that
    finishes without waiting wins at once, without a task (the others are closed unstarted).

    A first coroutine that does wait is raced against the others by ``race`` from where it
    stands, so it is cancelled if another finishes first, as it would have been.
    """
    first = coros[0] if coros else None
    if not asyncio.iscoroutine(first):
        return await race(*coros, timeout=timeout)
    try:
        blocked_on = first.send(None)
    except StopIteration as finished:
        _close(coros[1:])
        return WaitResults([first], [finished.value], False)
    except BaseException:
        _close(coros[1:])
        raise
    return await race(_Resumed(first, blocked_on), *coros[1:], timeout=timeout)


def _close(coros: tuple[WaitArgT, ...]) -> None:
    for coro in coros:
        if asyncio.iscoroutine(coro):
            coro.close()


class _Resumed:
    """The rest of a coroutine that was run up to its first wait, as an awaitable a task can
    drive: it hands the task what the coroutine waits on, and the outcome back to it."""

    def __init__(self, coro: Coroutine[Any, Any, Any], blocked_on: Any) -> None:
        self._coro, self._blocked_on = coro, blocked_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting_on = self._coro, self._blocked_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as error:  # e.g. the task was cancelled: tell the coroutine
                try:
                    waiting_on = coro.throw(error)
                except StopIteration as finished:
                    return finished.value
            else:
                try:
                    waiting_on = coro.send(sent)
                except StopIteration as finished:
                    return finished.value
