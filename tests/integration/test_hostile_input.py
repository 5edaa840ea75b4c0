"""Hostile input through the worker's batch path and the ingest API: refused with the field
named, or processed; never a crash, never a 5xx.

The worker's runtime (real Redis, real models) takes the fixed corpus of
``load_tests/hostile.py`` and generated batches (hypothesis); the real ``crm worker`` takes
the corpus from Kafka. The ingest API (``POST /v1/events`` and ``/v1/segment/batch``) takes
the corpus and generated bodies.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.batch import process_batch
from agents.decoding import RawMessage
from agents.runtime import WorkerRuntime
from feature_store.keys import CustomerKeys
from load_tests.hostile import hostile_corpus, hostile_stream
from schemas.records import DeadLetter
from schemas.topics import CLICKS, DEADLETTER
from stream.processes import ManagedProcess
from stream.producer import EventProducer
from stream.settings import Settings
from tests.helpers import wait_for
from tests.integration.faults import read_topic
from tests.integration.support import Api, NoRereads, caught_up
from tests.unit.support import FakeAlertProducer
from tests.unit.test_hostile_codec import hostile_events

CORPUS = hostile_corpus()


class RecordedDeadLetters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def publish_all(self, dead_letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(dead_letters)


@pytest.fixture
async def runtime(redis_url: str, tmp_path: Path) -> AsyncIterator[WorkerRuntime]:
    """A worker's runtime on an empty redis-server whose dead letters are recorded."""
    settings = Settings(kafka_bootstrap="127.0.0.1:1", redis_url=redis_url,
                        checkpoint_dir=tmp_path, recommender_process=False)
    letters = RecordedDeadLetters()
    with mock.patch("agents.runtime.DeadLetterPublisher", lambda settings: letters), \
            mock.patch("agents.runtime.PartitionReader", lambda settings: NoRereads()), \
            mock.patch("agents.publishing.Producer", lambda config: FakeAlertProducer()):
        worker = WorkerRuntime(settings)
    await worker.store.redis.flushdb()
    yield worker
    await worker.store.close()


def letters(runtime: WorkerRuntime) -> list[DeadLetter]:
    return runtime.worker.dead_letters.letters  # type: ignore[attr-defined,no-any-return]


async def test_the_worker_dead_letters_the_corpus_and_processes_the_valid_rest(
        runtime: WorkerRuntime) -> None:
    """Verify that each hostile payload, one batch each and then all in one batch, is a
    dead letter with its code, or applied; the worker's state stays usable."""
    topic = runtime.settings.topic(CLICKS)
    offsets = itertools.count()
    for item in CORPUS:
        result = await process_batch(runtime.worker, [RawMessage(topic, 0, next(offsets),
                                                                 item.payload)])
        outcome = next(iter(result.outcomes))[1]
        assert outcome == ("dead_letter" if item.code else "ok"), (item.name, result.outcomes)
        if item.code:
            assert letters(runtime)[-1].error_code.value == item.code, item.name
    everything = await process_batch(runtime.worker,
        [RawMessage(topic, 0, next(offsets), item.payload) for item in CORPUS])
    invalid = sum(1 for item in CORPUS if item.code)
    assert everything.outcomes[(topic, "dead_letter")] == invalid
    assert everything.outcomes[(topic, "duplicate")] == len(CORPUS) - invalid
    profile = await runtime.store.redis.hgetall(CustomerKeys("default", "../../etc/passwd").profile)
    assert profile[b"cart_adds"] == b"1"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(hostile_events() | st.binary(max_size=300), min_size=1, max_size=20))
async def test_generated_hostile_batches_never_stop_the_worker(
        runtime: WorkerRuntime, batch: list[Any]) -> None:
    """Verify that batches of generated hostile events and bytes are each processed: every
    message is a dead letter, applied, or a duplicate; nothing raises."""
    topic = runtime.settings.topic(CLICKS)
    start = runtime.worker.processed
    messages = []
    for offset, item in enumerate(batch, start=start):
        payload = item if isinstance(item, bytes) else json.dumps(item, default=str).encode()
        messages.append(RawMessage(topic, 0, offset, payload))
    result = await process_batch(runtime.worker, messages)
    assert sum(result.outcomes.values()) == len(batch)
    assert {outcome for _, outcome in result.outcomes} <= {"ok", "duplicate", "dead_letter"}


async def test_an_event_dated_a_day_ahead_does_not_fire_the_partitions_timers(
        runtime: WorkerRuntime) -> None:
    """Verify that an event 23 hours ahead (accepted: clocks run fast) leaves the partition's
    watermark at the wall clock, so a cart added 5 minutes ago does not fire."""
    topic = runtime.settings.topic(CLICKS)
    now = datetime.now(UTC)

    def click(event_id: str, customer: str, at: datetime, kind: str) -> RawMessage:
        event = {"event_id": event_id, "customer_id": customer, "type": "click", "kind": kind,
                 "product_id": "p1", "occurred_at": at.isoformat()}
        return RawMessage(topic, 0, int(event_id[1:]), orjson.dumps(event))

    await process_batch(runtime.worker, [click("e0", "c1", now - timedelta(minutes=5),
                                               "add_to_cart")])
    await process_batch(runtime.worker, [click("e1", "c2", now + timedelta(hours=23),
                                               "page_view")])
    (watermark,) = runtime.worker.partitions.watermarks([(topic, 0)]).values()
    assert watermark <= datetime.now(UTC).timestamp() * 1000
    producer: FakeAlertProducer = runtime.worker.alerts._producer
    assert [alert.kind.value for alert in producer.alerts()] == []


def test_the_worker_process_dead_letters_the_corpus_and_keeps_going(
        settings: Settings, start_worker: Callable[..., ManagedProcess]) -> None:
    """Verify that the real worker, fed the corpus from Kafka, dead-letters exactly the
    invalid payloads (with their codes), applies the valid ones and stays up."""
    worker = start_worker("worker")
    sources: dict[tuple[str, int, int], str | None] = {}
    last: dict[tuple[str, int], int] = {}

    def placed(code: str | None) -> Callable[[str, int, int], None]:
        def record(topic: str, partition: int, offset: int) -> None:
            sources[(topic, partition, offset)] = code
            last[(topic, partition)] = max(last.get((topic, partition), -1), offset)
        return record

    with EventProducer(settings=settings, extra_config={"message.max.bytes": 2_000_000}
                       ) as producer:
        for item in CORPUS:
            producer.send_raw(settings.topic(item.topic), "hostile", item.payload,
                              on_delivered=placed(item.code))
    wait_for(caught_up(redis.Redis.from_url(settings.redis_url), last), timeout=120,
             alive=[worker], what="the worker to process the corpus")
    letters_read = read_topic(settings, DEADLETTER, quiet_s=3)
    got = {(d["source_topic"], d["source_partition"], d["source_offset"]): d["error_code"]
           for d in letters_read}
    assert got == {source: code for source, code in sources.items() if code}
    assert worker.is_running()


# -- the ingest API --------------------------------------------------------------------------


def expected_answer(item: Any) -> tuple[int, str | None]:
    """What POST /v1/events must answer a batch holding this one event (a key of tenant
    ``default``): 202, or 422 and the field to name (``None``: the body itself is bad)."""
    try:
        event = json.loads(item.payload)
    except (ValueError, RecursionError):  # not JSON, or nested too deep for a parser
        # (Python's parser, as the API's, takes NaN and Infinity)
        return 422, None
    if isinstance(event, dict) and event.get("tenant", "default") != "default":
        return 422, "tenant"  # a key sends for its own tenant only
    return (202, None) if item.code is None else (422, item.field)


@pytest.mark.parametrize("item", CORPUS, ids=lambda item: item.name)
async def test_the_ingest_api_refuses_each_hostile_event_naming_the_field(
        api: Api, item: Any) -> None:
    """Verify that POST /v1/events answers a batch with one hostile event as a shop sent
    it: 422 naming the field (or 202 for a valid event), never a 5xx."""
    body = b'{"events": [' + item.payload + b"]}"
    response = await api.client.post("/v1/events", content=body, headers={
        **await api.key("default"), "Content-Type": "application/json"})
    status, field = expected_answer(item)
    assert response.status_code == status, response.text
    if field:
        (rejected,) = response.json()["rejected"]
        assert field in {problem["field"] for problem in rejected["problems"]}, rejected


async def test_bodies_over_the_limit_are_413_before_they_are_read(api: Api) -> None:
    """Verify that a body over the API's limit is 413, whether it declares its length or
    comes in chunks without one."""
    headers = {**await api.key("default"), "Content-Type": "application/json"}
    huge = b'{"events": [' + b"1," * 6_000_000 + b"1]}"
    response = await api.client.post("/v1/events", content=huge, headers=headers)
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"events": ['
        for _ in range(200):
            yield b"1," * 30_000
        yield b"1]}"

    response = await api.client.post("/v1/segment/batch", content=chunks(), headers=headers)
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


segment_calls = st.fixed_dictionaries({
    "type": st.sampled_from(["track", "identify", "page", "alias", "", "__proto__"]),
    "event": st.sampled_from(["Order Completed", "Product Added", "Product Viewed", "x"])
    | st.text(max_size=20),
    "userId": st.none() | st.text(max_size=30) | st.integers(),
    "anonymousId": st.none() | st.text(max_size=30),
    "messageId": st.none() | st.text(max_size=30),
    "timestamp": st.none() | st.sampled_from(
        ["2026-05-01T10:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z",
         "yesterday", ""]),
    "properties": st.dictionaries(st.sampled_from(
        ["product_id", "price", "quantity", "products", "order_id", "currency", "category"]),
        st.none() | st.text(max_size=10) | st.floats() | st.integers() | st.lists(
            st.dictionaries(st.sampled_from(["product_id", "price", "quantity"]),
                            st.floats() | st.integers() | st.text(max_size=5)), max_size=3)),
})


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(events=st.lists(hostile_events(), max_size=5), calls=st.lists(segment_calls, max_size=5))
async def test_generated_hostile_batches_never_get_a_5xx(
        api: Api, events: list[dict[str, Any]], calls: list[dict[str, Any]]) -> None:
    """Verify that generated hostile events and Segment calls get 202 or 4xx, each
    rejection with a code, and no answer carries a trace."""
    headers = await api.key("default", rate_limit=0)
    for path, body in (("/v1/events", {"events": events}),
                       ("/v1/segment/batch", {"batch": calls})):
        response = await api.client.post(
            path, content=json.dumps(body, default=str),
            headers={**headers, "Content-Type": "application/json"})
        assert response.status_code in (202, 413, 422), (path, response.text)
        assert "Traceback" not in response.text
        for rejected in response.json().get("rejected", []):
            assert rejected["code"] and rejected["problems"]


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid``, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


ROUNDS, PER_ROUND = 8, 500


def test_the_worker_memory_stays_bounded_under_a_hostile_stream(
        settings: Settings, start_worker: Callable[..., ManagedProcess]) -> None:
    """Verify that the worker's resident memory levels off while it takes round after round
    of the corpus (1 MB strings, 10,000-item orders, random bytes; valid events under fresh
    ids of ever more customers): after the first round, less than 60 MB more in all."""
    worker = start_worker("worker", recommender_process=False)
    client = redis.Redis.from_url(settings.redis_url)
    stream = hostile_stream(ROUNDS * PER_ROUND, seed=24)
    measured = []
    with EventProducer(settings=settings, extra_config={"message.max.bytes": 2_000_000}
                       ) as producer:
        last: dict[tuple[str, int], int] = {}

        def record(topic: str, partition: int, offset: int) -> None:
            last[(topic, partition)] = max(last.get((topic, partition), -1), offset)

        for _ in range(ROUNDS):
            for topic, key, payload in itertools.islice(stream, PER_ROUND):
                producer.send_raw(settings.topic(topic), key, payload, on_delivered=record)
            producer.flush()
            wait_for(caught_up(client, last), timeout=180, alive=[worker],
                     what="the worker to process a round of hostile input")
            measured.append(rss_mb(worker.pid))
    print(f"\nworker RSS after each round of {PER_ROUND} hostile messages (MB): "
          + ", ".join(f"{mb:.0f}" for mb in measured))
    assert worker.is_running()
    assert measured[-1] - measured[0] < 60, measured
