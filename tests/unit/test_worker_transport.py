"""The worker's consumers fetch with our wait and minimum, not Faust's fixed 1,500 ms and 1 B,
and hand each message to the streams without a task unless the delivery has to wait."""

from __future__ import annotations

import asyncio

import aiokafka
import pytest
from mode import Service

from agents.app import create_app
from agents.transport import set_fetch_options, wait_first_eagerly
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


class _Service(Service):
    """A bare mode service to call ``wait_first`` on."""


async def test_a_delivery_that_does_not_wait_wins_at_once_and_the_others_are_never_started(
) -> None:
    service = _Service()
    suspended = asyncio.Event()
    waiter = suspended.wait()
    delivered: list[str] = []

    async def deliver(message: str) -> str:
        delivered.append(message)
        return message

    tasks_before = len(asyncio.all_tasks())
    result = await wait_first_eagerly(service.wait_first, deliver("m1"), waiter)

    assert result.done and result.results == ["m1"] and not result.stopped
    assert delivered == ["m1"]
    assert len(asyncio.all_tasks()) == tasks_before  # no task was made for it
    assert waiter.cr_frame is None  # closed, so no "never awaited" warning


async def test_a_delivery_that_waits_is_finished_when_nothing_else_happens_first() -> None:
    service = _Service()
    room = asyncio.Event()
    suspended = asyncio.Event()

    async def deliver() -> str:
        await room.wait()  # a full buffer
        return "delivered"

    asyncio.get_running_loop().call_later(0.01, room.set)
    result = await wait_first_eagerly(service.wait_first, deliver(), suspended.wait())
    assert result.results == ["delivered"] and not result.stopped


async def test_a_waiting_delivery_is_cancelled_when_the_flow_is_suspended_first() -> None:
    """As with Faust's own wait_first: a delivery held up by a full buffer is dropped when a
    rebalance suspends the flow, so no message of a revoked partition gets through."""
    service = _Service()
    room = asyncio.Event()
    suspended = asyncio.Event()
    outcome: list[str] = []

    async def deliver() -> None:
        try:
            await room.wait()
            outcome.append("delivered")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    asyncio.get_running_loop().call_later(0.01, suspended.set)
    await wait_first_eagerly(service.wait_first, deliver(), suspended.wait())
    await asyncio.sleep(0)
    room.set()
    await asyncio.sleep(0.01)
    assert outcome == ["cancelled"]


async def test_an_error_in_a_delivery_is_raised_to_the_drain_loop() -> None:
    service = _Service()

    async def deliver() -> None:
        raise ValueError("undecodable")

    with pytest.raises(ValueError, match="undecodable"):
        await wait_first_eagerly(service.wait_first, deliver(), asyncio.Event().wait())


async def test_the_worker_consumer_delivers_eagerly_unless_the_flow_is_suspended() -> None:
    app = create_app(Settings(kafka_bootstrap="127.0.0.1:1"))
    consumer = app.consumer
    tasks_before = len(asyncio.all_tasks())

    async def deliver() -> str:
        return "delivered"

    result = await consumer.wait_first(deliver(), asyncio.Event().wait())
    assert result.results == ["delivered"]
    assert len(asyncio.all_tasks()) == tasks_before

    room = asyncio.Event()

    async def deliver_into_a_full_buffer() -> str:
        await room.wait()
        return "delivered late"

    asyncio.get_running_loop().call_later(0.01, room.set)
    result = await consumer.wait_first(deliver_into_a_full_buffer(), asyncio.Event().wait())
    assert result.results == ["delivered late"]

    consumer.stop_flow()  # a rebalance: mode's own race, which lets nothing through
    suspended = consumer.suspend_flow.wait()
    result = await consumer.wait_first(asyncio.sleep(10), suspended)
    assert result.done == [suspended]
