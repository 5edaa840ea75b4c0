"""The worker's consumers fetch with our wait and minimum, not Faust's fixed 1,500 ms and 1 B."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from types import SimpleNamespace

import aiokafka
from faust.types import Message

from agents.app import create_app
from agents.transport import InputFeed, drain_into_feed, set_fetch_options
from stream.settings import Settings


async def test_fetch_options_reach_a_consumer_before_it_starts() -> None:
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1",
                                         fetch_max_wait_ms=1500)
    set_fetch_options(consumer, max_wait_ms=10, min_bytes=32_768)
    assert (consumer._fetch_max_wait_ms, consumer._fetch_min_bytes) == (10, 32_768)


async def test_the_worker_app_builds_its_consumer_with_the_fetch_options_of_the_settings(
) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", fetch_max_wait_ms=25,
                        fetch_min_bytes=4096)
    app = create_app(settings)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
    try:
        assert (consumer._fetch_max_wait_ms, consumer._fetch_min_bytes) == (25, 4096)
    finally:
        await consumer.stop()


def test_defaults_wait_briefly_for_a_few_kilobytes() -> None:
    """Short enough for the alert latency goal, big enough to batch at thousands per second."""
    settings = Settings(kafka_bootstrap="127.0.0.1:1")
    assert settings.fetch_max_wait_ms <= 50 and settings.fetch_min_bytes >= 16_384


def _fetch(*offsets: int) -> list[Message]:
    return [Message("t", 0, offset, timestamp=0.0, timestamp_type=0, headers=None, key=None,
                    value=b"{}", checksum=None) for offset in offsets]


def _offsets(messages: list[Message]) -> list[int]:
    return [message.offset for message in messages]


async def test_a_batch_takes_the_waiting_fetches_in_order_up_to_its_size() -> None:
    feed = InputFeed(["t"], max_fetches=3)
    for fetch in (_fetch(0, 1), _fetch(2, 3, 4), _fetch(5)):
        await feed.put(fetch)
    assert _offsets(await feed.take(4, within=0.0)) == [0, 1, 2, 3]
    assert _offsets(await feed.take(4, within=0.0)) == [4, 5]


async def test_a_fetch_bigger_than_a_batch_is_split_without_losing_a_message() -> None:
    feed = InputFeed(["t"])
    await feed.put(_fetch(*range(7)))
    batches = [_offsets(await feed.take(3, within=0.0)) for _ in range(3)]
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_small_batch_waits_the_window_for_the_next_fetch_and_no_longer() -> None:
    feed = InputFeed(["t"])
    await feed.put(_fetch(0))

    async def later() -> None:
        await asyncio.sleep(0.01)
        await feed.put(_fetch(1))

    arriving = asyncio.create_task(later())
    assert _offsets(await feed.take(10, within=0.5)) == [0, 1]
    await arriving
    started = time.monotonic()
    await feed.put(_fetch(2))
    assert _offsets(await feed.take(10, within=0.05)) == [2]
    assert time.monotonic() - started < 0.5


async def test_the_consumer_waits_while_the_batches_are_behind() -> None:
    """Bounded: a consumer that runs ahead of the batches does not fill the memory."""
    feed = InputFeed(["t"], max_fetches=1)
    await feed.put(_fetch(0))
    blocked = asyncio.create_task(feed.put(_fetch(1)))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    assert _offsets(await feed.take(1, within=0.0)) == [0]
    await asyncio.wait_for(blocked, 1)


def test_the_worker_subscribes_the_input_topics_and_feeds_them_to_its_batches() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="shop7.")
    app = create_app(settings)
    assert app.input_feed is not None  # type: ignore[attr-defined]
    assert app.input_feed.topics == {  # type: ignore[attr-defined]
        "shop7.shop.clicks", "shop7.shop.purchases", "shop7.support.tickets"}
    subscribed = {name for topic in app.topics._topics  # type: ignore[attr-defined]
                  for name in topic.topics}
    assert app.input_feed.topics <= subscribed  # type: ignore[attr-defined]


async def test_a_revocation_drops_what_was_fetched_and_not_taken() -> None:
    """After a rebalance the consumer reads on from the committed offsets: the messages come
    again, to whichever worker owns their partition now."""
    feed = InputFeed(["t"], max_fetches=3)
    await feed.put(_fetch(0, 1, 2))
    await feed.put(_fetch(3))
    assert _offsets(await feed.take(2, within=0.0)) == [0, 1]
    assert feed.clear() == 2
    await feed.put(_fetch(7))
    assert _offsets(await feed.take(10, within=0.0)) == [7]


class _Consumer:
    """The parts of Faust's aiokafka Consumer that :func:`drain_into_feed` uses: one fetch
    of ``fetched`` messages, then the consumer stops."""

    consumer_stopped_errors = (RuntimeError,)

    def __init__(self, fetched: list[Message]) -> None:
        self.fetched = fetched
        self._stopped = asyncio.Event()
        self.suspend_flow = asyncio.Event()
        self.should_stop = False
        self._read_offset: dict[object, int | None] = {}
        self._commit_every = None
        self._n_acked = 0
        self.tracked: list[int] = []
        self.app = SimpleNamespace(consumer_generation_id=1,
                                   topics=SimpleNamespace(acks_enabled_for=lambda _: True))
        self.transport = SimpleNamespace(app=SimpleNamespace(should_stop=True))
        self.callback = None  # for other topics' messages: none here

    def track_message(self, message: Message) -> None:
        self.tracked.append(message.offset)

    async def sleep(self, _: float) -> None:
        await asyncio.sleep(0)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[object, Message]]:
        for message in self.fetched:
            yield message.tp, message
        self._stopped.set()

    async def wait_first(self, *awaitables: Awaitable[object]) -> None:
        tasks = [asyncio.ensure_future(a) for a in awaitables]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()


async def test_the_consumer_puts_each_fetch_of_the_input_topics_in_the_feed_as_one_list(
) -> None:
    consumer = _Consumer(_fetch(0, 1, 2))
    feed = InputFeed(["t"])
    await drain_into_feed(consumer, SimpleNamespace(_stopped=asyncio.Event()), feed)
    assert _offsets(await feed.take(10, within=0.0)) == [0, 1, 2]
    assert consumer.tracked == [0, 1, 2]  # unacknowledged until the batch acks them


async def test_a_rebalance_abandons_a_fetch_waiting_for_room_in_the_feed() -> None:
    """A fetch that waits for a full feed when the partitions are revoked must not land after
    the feed was cleared: the consumer seeks back to the committed offsets, so its messages
    come again, to whichever worker owns them now."""
    consumer = _Consumer(_fetch(5, 6))
    feed = InputFeed(["t"], max_fetches=1)
    await feed.put(_fetch(4))  # full
    draining = asyncio.create_task(
        drain_into_feed(consumer, SimpleNamespace(_stopped=asyncio.Event()), feed))
    await asyncio.sleep(0.05)
    assert not draining.done()  # waiting for room
    consumer.suspend_flow.set()  # Faust stops the flow, awaits its streams, then signals
    await asyncio.sleep(0.01)   # the revocation (faust.app.base: _on_partitions_revoked):
    assert feed.clear() == 1
    await asyncio.wait_for(draining, timeout=1.0)
    assert feed.clear() == 0  # the waiting fetch did not land
