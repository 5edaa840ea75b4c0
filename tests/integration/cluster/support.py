"""What the cluster tests share: a replay (simulated shop events with duplicates, disorder
and malformed events, sent through Kafka), the wait for the workers to catch up, and the
check that every profile equals the offline recomputation and the DLQ the malformed events.

Nothing here is a test.
"""

from __future__ import annotations

import random
import re
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import orjson

from feature_store.client import connect_sync
from feature_store.keys import (
    METRICS_KEY,
    CustomerKeys,
    customers_key,
    progress_key,
    segments_key,
)
from feature_store.replies import text
from load_tests.chaos import inject_duplicates, malformed_events, shuffle_out_of_order
from simulator import TOPIC_BY_TYPE, ShopSimulator
from stream.processes import ManagedProcess
from stream.producer import EventProducer
from stream.settings import Settings
from tests.helpers import wait_for
from tests.integration.support import assert_profiles_exact
from tests.integration.test_replay_exactness import read_dead_letters


@dataclass
class Replay:
    """A simulated shop's events, 5% sent twice, 10% out of order, 2% malformed ones
    among them, as (topic, key, payload, error code of a malformed one)."""

    settings: Settings
    valid: list[dict[str, Any]]
    stream: list[tuple[str, str | None, bytes, str | None]]
    malformed: int
    dead_letter_sources: dict[tuple[str, int, int], str] = field(default_factory=dict)
    last_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    delivered: int = 0

    @classmethod
    def build(cls, settings: Settings, *, events: int, customers: int, days: int = 150,
              seed: int = 5) -> Replay:
        rng = random.Random(seed)
        simulator = ShopSimulator(customers=customers, seed=seed,
                                  start=datetime(2025, 2, 1, tzinfo=UTC), days=days)
        valid = list(islice(simulator.events(), events))
        assert len(valid) == events, "the simulation must yield enough events"
        tagged = [(TOPIC_BY_TYPE[e["type"]], e) for e in valid]
        delivered = shuffle_out_of_order(inject_duplicates(tagged, 0.05, rng), 0.10, 400, rng)
        stream: list[tuple[str, str | None, bytes, str | None]] = [
            (settings.topic(topic), e.get("customer_id") or f"anon:{e['anonymous_id']}",
             orjson.dumps(e), None) for topic, e in delivered]
        bad = malformed_events(rng, round(0.02 * events))
        for topic, key, payload, code in bad:
            stream.insert(rng.randrange(len(stream) + 1),
                          (settings.topic(topic), key, payload, code))
        return cls(settings=settings, valid=valid, stream=stream, malformed=len(bad))

    def send(self, *, pace_s: float = 0.0, during: Callable[[int], None] | None = None,
             chunk: int = 1000) -> None:
        """Produce the stream (waiting for every delivery); with ``pace_s``, in chunks of
        ``chunk`` messages that far apart, calling ``during(messages sent)`` between them."""
        def remember(code: str | None) -> Callable[[str, int, int], None]:
            def on_delivered(topic: str, partition: int, offset: int) -> None:
                key = (topic, partition)
                self.last_offsets[key] = max(self.last_offsets.get(key, -1), offset)
                self.delivered += 1
                if code is not None:
                    self.dead_letter_sources[(topic, partition, offset)] = code
            return on_delivered

        with EventProducer(settings=self.settings) as producer:
            for start in range(0, len(self.stream), chunk):
                for topic, key, payload, code in self.stream[start:start + chunk]:
                    producer.send_raw(topic, key, payload, on_delivered=remember(code))
                if during is not None:
                    during(start + chunk)
                if pace_s:
                    time.sleep(pace_s)
        assert self.delivered == len(self.stream), "every message must be delivered"
        assert len(self.dead_letter_sources) == self.malformed

    def processed(self) -> int:
        """Messages the workers have counted as processed (all outcomes)."""
        client = connect_sync(self.settings.redis_url, cluster=True)
        try:
            counts: Any = client.hgetall(METRICS_KEY)
        finally:
            client.close()
        return sum(int(value) for value in counts.values())

    def caught_up(self) -> bool:
        """Whether the recorded progress of every partition reached its last offset sent."""
        client = connect_sync(self.settings.redis_url, cluster=True)
        try:
            with client.pipeline(transaction=False) as pipe:
                for topic, partition in self.last_offsets:
                    pipe.get(progress_key(topic, partition))
                done = pipe.execute()
        finally:
            client.close()
        return all(value is not None and int(value) >= self.last_offsets[key]
                   for key, value in zip(self.last_offsets, done, strict=True))

    def wait_until_processed(self, share: float, alive: Sequence[ManagedProcess],
                             timeout: float = 240) -> None:
        wait_for(lambda: self.processed() >= share * len(self.stream), timeout=timeout,
                 what=f"{share:.0%} of the stream to be processed", interval=0.1,
                 alive=alive)

    def wait_until_caught_up(self, alive: Sequence[ManagedProcess], timeout: float = 300
                             ) -> None:
        wait_for(self.caught_up, timeout=timeout, what="the workers to reach the end offsets",
                 alive=alive)

    def assert_exact(self) -> int:
        """Every profile equals the offline recomputation, no profile is extra, and the DLQ
        holds exactly the malformed events (repeats allowed); answers the profiles checked."""
        checked = assert_profiles_exact(self.settings.redis_url, self.valid, cluster=True)
        letters = read_dead_letters(self.settings, self.malformed, timeout=120)
        by_source = {(d["source_topic"], d["source_partition"], d["source_offset"]): d
                     for d in letters}
        assert set(by_source) == set(self.dead_letter_sources), (
            "the DLQ must hold the malformed events")
        for source, code in self.dead_letter_sources.items():
            assert by_source[source]["error_code"] == code, by_source[source]
        return checked


    def segments(self, tenant: str = "default") -> tuple[set[str], int, set[str], int]:
        """What the tenant's customers were served of segments: the segmenters named by the
        profiles that have a segment, and how many have one; those named by the published
        segments (``/v1/segments``), and the sum of their sizes."""
        client = connect_sync(self.settings.redis_url, cluster=True)
        try:
            customers = [text(c) for c in client.zrange(customers_key(tenant), 0, -1)]
            with client.pipeline(transaction=False) as pipe:
                for customer in customers:
                    pipe.hmget(CustomerKeys(tenant, customer).profile, "segment", "segmenter")
                rows: Any = pipe.execute()
            published: Any = client.hgetall(segments_key(tenant))
        finally:
            client.close()
        placed = [text(segmenter) for segment, segmenter in rows if segment]
        records = [orjson.loads(value) for value in published.values()]
        return (set(placed), len(placed), {record["segmenter"] for record in records},
                sum(record["size"] for record in records))


def events_processed_by(metrics_port: int) -> int:
    """What one worker reports it processed (its ``crm_worker_events_processed`` total; 0
    while its metrics are not served yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=5) as page:
            text = page.read().decode()
    except OSError:  # URLError included: the worker is still starting
        return 0
    return int(sum(float(value) for value in re.findall(
        r"^crm_worker_events_processed_total\{[^}]*\} ([0-9.e+]+)$", text, re.MULTILINE)))
