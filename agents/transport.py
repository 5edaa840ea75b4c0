"""Faust's aiokafka transport, changed in the two places where a benchmark shows it pays: the
consumer's fetch wait and size come from our settings, and the input topics' messages reach
the batch task a fetch at a time (:class:`InputFeed`) instead of one by one through a stream.
This module is the worker's only subclass of Faust's internals.

**Fetch options.** Faust builds the worker's ``AIOKafkaConsumer`` with
``fetch_max_wait_ms=1500``, aiokafka's ``fetch_min_bytes=1``, and no setting to change
either. Both matter for latency and CPU:

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

This transport sets both before the consumer starts: Faust has no setting for either.

**The input feed.** Faust hands a message to an agent through about a dozen steps per
message: two tasks in mode's ``wait_first``, a lock in the conductor, an event, a queue, the
stream's processors and its acks. With a batch function that only counted, a worker reading
through an agent's ``take_events`` drained a 134,000-event backlog at 10,300-12,200 events/s
on a full core (4 runs); through the feed, at 118,000 events/s. With every model on, the
same backlog drained at 3,900 events/s through the agent and 5,046 through the feed (one
run each, load_tests/results/THROUGHPUT.md has the current figure). The feed keeps the rest
of Faust: the consumer group and its rebalances, the commits of acknowledged offsets, the
erasure agent and the timers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

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

        async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover
            feed = getattr(self.app, "input_feed", None)
            if feed is None:
                await super()._drain_messages(fetcher)
            else:
                await drain_into_feed(self, fetcher, feed)

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


class InputFeed:
    """The input topics' messages, handed by the consumer to the batch task a fetch at a time
    (see the module). A message is tracked as unacknowledged from its fetch until the batch
    task has processed it and calls :func:`ack_all`, so Faust commits no offset beyond a
    message that is not done: a crash repeats the batch (harmless, see agents.batch)."""

    def __init__(self, topics: Iterable[str], *, max_fetches: int = 2) -> None:
        self.topics = frozenset(topics)
        # Bounded: a consumer that runs ahead waits for the batches to catch up.
        self._fetches: asyncio.Queue[list[Message]] = asyncio.Queue(max_fetches)
        self._left: list[Message] = []

    async def put(self, messages: list[Message]) -> None:
        await self._fetches.put(messages)

    def clear(self) -> int:
        """Drop the messages not taken yet (on a partition revocation, as Faust clears its
        own queues then: after the rebalance the consumer reads on from the committed
        offsets, so they come again to whichever worker owns them). Returns how many."""
        dropped = len(self._left)
        self._left = []
        while not self._fetches.empty():
            dropped += len(self._fetches.get_nowait())
        return dropped

    async def take(self, max_events: int, within: float) -> list[Message]:
        """Up to ``max_events`` messages: those waiting, else the next fetch and whatever
        follows it within ``within`` seconds."""
        batch, self._left = self._left[:max_events], self._left[max_events:]
        if not batch:
            batch = await self._fetches.get()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(batch) < max_events:
            if self._fetches.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        batch.extend(await self._fetches.get())
                except TimeoutError:
                    break
            else:
                batch.extend(self._fetches.get_nowait())
        if len(batch) > max_events:
            batch, self._left = batch[:max_events], batch[max_events:] + self._left
        return batch


async def drain_into_feed(consumer: Any, fetcher: Any, feed: InputFeed) -> None:
    """Faust's ``Consumer._drain_messages`` (faust-streaming 0.15), except that each fetch's
    messages of the feed's topics go to the feed in one list (tracked as unacknowledged until
    the batch task acks them); any other topic's messages go to Faust's agents as before.
    Each fetch is logged at debug level, and the first after each assignment at info, so a
    worker that stops receiving shows where."""
    callback = consumer.callback
    consumer_should_stop = consumer._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    read_offsets: dict[TP, int | None] = consumer._read_offset
    acks_enabled_for = consumer.app.topics.acks_enabled_for
    track = consumer.track_message
    commit_every = consumer._commit_every
    bulk_topics = feed.topics
    logged_generation = None
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            await consumer.sleep(0)
            if consumer.should_stop:
                continue
            taken: list[Message] = []
            async for tp, message in consumer.getmany(timeout=1.0):
                offset = message.offset
                read = read_offsets.get(tp)
                if read is not None and offset < read:
                    continue  # read before (Faust drops these too)
                if read and offset - read > 1 and acks_enabled_for(message.topic):
                    await consumer._add_gap(tp, read + 1, offset)
                if commit_every is not None and consumer._n_acked >= commit_every:
                    consumer._n_acked = 0
                    await consumer.commit()
                if message.topic in bulk_topics:
                    track(message)
                    taken.append(message)
                else:
                    await consumer.wait_first(callback(message), consumer.suspend_flow.wait())
                read_offsets[tp] = offset
            if taken:
                generation = consumer.app.consumer_generation_id
                if generation != logged_generation:
                    logged_generation = generation
                    log.info("first fetch of consumer generation %s: %d messages, %s",
                             generation, len(taken), _partitions_of(taken))
                else:
                    log.debug("fetched %d messages", len(taken))
                # As Faust hands a message to a stream: a rebalance (suspend_flow) abandons
                # a fetch still waiting for room. The feed was cleared on the revocation and
                # the consumer seeks back to the committed offsets, so these come again; put
                # later, they would be a revoked partition's messages after the clear.
                await consumer.wait_first(feed.put(taken), consumer.suspend_flow.wait())
    except consumer.consumer_stopped_errors:
        if consumer.transport.app.should_stop:
            return
        raise
    except asyncio.CancelledError:
        if consumer.transport.app.should_stop:
            return
        raise


def _partitions_of(messages: list[Message]) -> str:
    """``topic/partition@first-last`` of each partition in ``messages``, for the log."""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for message in messages:
        key = (message.topic, message.partition)
        first, last = ranges.get(key, (message.offset, message.offset))
        ranges[key] = (min(first, message.offset), max(last, message.offset))
    return ", ".join(f"{topic}/{partition}@{first}-{last}"
                     for (topic, partition), (first, last) in sorted(ranges.items()))


def ack_all(consumer: Any, messages: Iterable[Message]) -> None:
    """Acknowledge processed messages: Faust commits a partition's offset up to them."""
    ack = consumer.ack
    for message in messages:
        ack(message)
