"""The worker's consumers fetch with our wait and minimum, not Faust's fixed 1,500 ms and 1 B."""

from __future__ import annotations

import aiokafka

from agents.app import create_app
from agents.transport import set_fetch_options
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
