"""The fault matrix: nothing lost, nothing counted twice, no alert lost, repeats counted.

A simulated shop streams at 1,000 events/s (3% of them re-sent by the shop, 60 malformed
payloads of every kind among them) while one fault strikes the real ``crm worker``
mid-stream: the worker SIGKILLed; redis-server stopped for 10 s; redis-server killed and
started again from an append-only file missing its last second; the Apache Kafka broker
stopped and started again; a second worker joining (a rebalance) while visitors are stitched
into customers whose events go to another partition. Afterwards, with no one's help, every
check of :func:`tests.integration.faults.assert_recovered` must hold.

Run with ``make test-faults`` (``-m faults``); CI runs it on Apache Kafka.
"""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from schemas.topics import CLICKS
from simulator import ShopSimulator
from stream.apache_kafka import ApacheKafka
from stream.processes import ManagedProcess, free_port
from stream.settings import Settings
from stream.topics import create_topics
from tests.integration.faults import (
    PacedShop,
    assert_recovered,
    scrape,
    shop_workload,
    wait_until_processed,
    write_alert_rules,
)
from tests.integration.support import OwnRedis

pytestmark = pytest.mark.faults

CUSTOMERS, DAYS = 450, 30
START = datetime(2025, 4, 1, tzinfo=UTC)


class Workers:
    """Starts ``crm worker`` processes as the matrix runs them: the rules of
    :data:`~tests.integration.faults.ALERT_RULES`, metrics on a port of their own, and a
    Redis deadline short enough that a stopped Redis is waited out by retrying."""

    def __init__(self, start_worker: Callable[..., ManagedProcess], rules: Path,
                 **overrides: Any) -> None:
        self._start, self.rules, self.overrides = start_worker, rules, overrides
        self.ports: dict[str, int] = {}

    def start(self, name: str) -> ManagedProcess:
        self.ports[name] = free_port()
        return self._start(name, alerts_config=self.rules, worker_metrics_port=self.ports[name],
                           redis_deadline_s=3.0, **self.overrides)


@pytest.fixture
def workers(start_worker: Callable[..., ManagedProcess], tmp_path: Path) -> Workers:
    return Workers(start_worker, write_alert_rules(tmp_path))


def test_a_worker_killed_mid_stream_is_replaced_and_nothing_is_lost(
        settings: Settings, workers: Workers) -> None:
    """Verify that after a SIGKILL of the worker (its supervisor starts a new one, as
    docker-compose's ``restart: unless-stopped`` does) every check holds."""
    shop = PacedShop(settings, shop_workload(settings, customers=CUSTOMERS, days=DAYS, seed=1,
                                             start=START))
    first = workers.start("worker-1")
    shop.start()
    wait_until_processed(redis.Redis.from_url(settings.redis_url), shop, 0.3, [first])
    counted = scrape(workers.ports["worker-1"], "crm_alerts_repeated_total")
    first.kill()  # no shutdown, no final commit or checkpoint
    second = workers.start("worker-2")

    recovery = assert_recovered(settings, shop, redis_url=settings.redis_url, running=[second],
                                metrics_ports=[workers.ports["worker-2"]],
                                counted_before=[counted])
    print(recovery.line("worker SIGKILLed"))


def test_redis_stopped_for_10_s_is_waited_out(
        settings: Settings, workers: Workers, own_redis: OwnRedis) -> None:
    """Verify that the worker waits out a redis-server stopped (SIGSTOP) for 10 s
    mid-stream, then catches up with every check holding."""
    shop = PacedShop(settings, shop_workload(settings, customers=CUSTOMERS, days=DAYS, seed=2,
                                             start=START))
    workers.overrides["redis_url"] = own_redis.url
    worker = workers.start("worker")
    shop.start()
    wait_until_processed(redis.Redis.from_url(own_redis.url), shop, 0.3, [worker])
    own_redis.pause(10)
    assert worker.is_running(), worker.log_tail(40)

    recovery = assert_recovered(settings, shop, redis_url=own_redis.url, running=[worker],
                                metrics_ports=[workers.ports["worker"]])
    waits = sum(scrape(workers.ports["worker"], "crm_worker_redis_waits_total").values())
    assert waits > 0, "the worker never noticed the pause: it came too late to test anything"
    print(recovery.line("redis-server stopped 10 s") + f" {waits:.0f} waits on Redis")


def test_redis_back_without_its_last_second_is_caught_up_from_kafka(
        settings: Settings, workers: Workers, own_redis: OwnRedis) -> None:
    """Verify that when redis-server is killed and comes back from an append-only file that
    lost its last second (progress and features behind what Kafka has committed), the worker
    processes the lost events again and every check holds."""
    shop = PacedShop(settings, shop_workload(settings, customers=CUSTOMERS, days=DAYS, seed=3,
                                             start=START))
    workers.overrides["redis_url"] = own_redis.url
    worker = workers.start("worker")
    own_redis.watch_append_only_file()
    shop.start()
    wait_until_processed(redis.Redis.from_url(own_redis.url), shop, 0.3, [worker])
    own_redis.kill()
    cut = own_redis.lose_last_writes(seconds=1.0)
    own_redis.restart()
    assert worker.is_running(), worker.log_tail(40)

    recovery = assert_recovered(settings, shop, redis_url=own_redis.url, running=[worker],
                                metrics_ports=[workers.ports["worker"]])
    log = worker.log_path.read_text()
    assert cut > 0 and "reading the messages in between again" in log, (
        "Redis lost nothing the worker had to process again: the test proves nothing")
    print(recovery.line("redis-server killed, last second of its AOF lost")
          + f" {cut:,} bytes of AOF cut, {log.count('in between again')} partitions re-read")


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[ApacheKafka]:
    """An Apache Kafka broker of this test's own (data kept in tmp_path), which it may stop
    and start again on the same port."""
    if shutil.which("java") is None:
        pytest.skip("Apache Kafka needs Java 17+")
    kafka = ApacheKafka(data_dir=tmp_path / "kafka")
    kafka.start()
    yield kafka
    kafka.stop()


def test_the_kafka_broker_stopped_and_started_again_is_waited_out(
        settings: Settings, workers: Workers, own_kafka: ApacheKafka) -> None:
    """Verify that stopping the Apache Kafka broker mid-stream and starting it again (its
    data on disk) leaves the worker running and every check holding; the shop's producer
    keeps its events meanwhile."""
    settings = settings.model_copy(update={"kafka_bootstrap": own_kafka.bootstrap})
    create_topics(settings)
    shop = PacedShop(settings, shop_workload(settings, customers=CUSTOMERS, days=DAYS, seed=4,
                                             start=START))
    workers.overrides["kafka_bootstrap"] = own_kafka.bootstrap
    worker = workers.start("worker")
    shop.start()
    wait_until_processed(redis.Redis.from_url(settings.redis_url), shop, 0.3, [worker])
    own_kafka.stop_broker(1)
    own_kafka.start_broker(1)  # on its old ports, with its data
    assert worker.is_running(), worker.log_tail(40)

    recovery = assert_recovered(settings, shop, redis_url=settings.redis_url, running=[worker],
                                metrics_ports=[workers.ports["worker"]])
    print(recovery.line("Apache Kafka stopped and started again"))


def _partition(key: str, partitions: int) -> int:
    """The partition librdkafka's default partitioner gives a key (CRC-32)."""
    return zlib.crc32(key.encode()) % partitions


def stitches_across_partitions(settings: Settings, count: int, between: tuple[float, float],
                               events: list[dict[str, Any]]) -> list[tuple[float, dict[str, Any]]]:
    """``count`` visitors who browse, then log in as a customer whose events go to another
    partition, spread over the ``between`` fractions of the stream (event times taken from
    the events they go among)."""
    extra: list[tuple[float, dict[str, Any]]] = []
    for number in range(count):
        visitor = f"fault-visitor-{number}"
        customer = next(f"fault-customer-{number}-{k}" for k in range(100)
                        if _partition(f"fault-customer-{number}-{k}", settings.partitions)
                        != _partition(f"anon:{visitor}", settings.partitions))
        at = between[0] + (between[1] - between[0]) * number / max(1, count - 1)
        when = events[round(at * len(events))]["occurred_at"]
        for view in range(5):
            extra.append((at, {"event_id": f"{visitor}-view-{view}", "anonymous_id": visitor,
                               "session_id": f"{visitor}-s", "type": "click",
                               "kind": "product_view", "product_id": f"p-{view:05d}",
                               "category": "books", "occurred_at": when}))
        extra.append((at + 0.002, {
            "event_id": f"{visitor}-login", "customer_id": customer, "anonymous_id": visitor,
            "session_id": f"{visitor}-s", "type": "click", "kind": "page_view",
            "url": "/login", "occurred_at": when}))
    return extra


def test_a_rebalance_while_visitors_are_stitched_across_partitions(
        settings: Settings, workers: Workers) -> None:
    """Verify that a second worker joining mid-stream (a rebalance moves partitions between
    them) while visitors are stitched into customers on other partitions leaves both running
    and every check holding."""
    events = list(ShopSimulator(customers=CUSTOMERS, seed=5, start=START, days=DAYS).events())
    extra = stitches_across_partitions(settings, 40, (0.25, 0.75), events)
    shop = PacedShop(settings, shop_workload(settings, customers=CUSTOMERS, days=DAYS, seed=5,
                                             start=START, extra=extra))
    first = workers.start("worker-1")
    shop.start()
    wait_until_processed(redis.Redis.from_url(settings.redis_url), shop, 0.3, [first])
    second = workers.start("worker-2")

    recovery = assert_recovered(settings, shop, redis_url=settings.redis_url,
                                running=[first, second],
                                metrics_ports=list(workers.ports.values()))
    clicks = settings.topic(CLICKS)
    places = {message.event["event_id"]: place for message, place
              in zip(shop.workload.outgoing, shop.placed, strict=True)
              if message.topic == clicks and message.event is not None and place is not None}
    for number in range(40):
        visitor = f"fault-visitor-{number}"
        assert places[f"{visitor}-view-0"][0] != places[f"{visitor}-login"][0]
    for name in ("worker-1", "worker-2"):  # the rebalance gave each partitions to process
        assert sum(scrape(workers.ports[name], "crm_worker_events_processed_total").values()) > 0
    print(recovery.line("second worker joined (rebalance), 40 visitors stitched across "
                        "partitions"))
