"""Scripted stories per alert kind on a real broker and Redis: exactly the expected alerts.

The first test runs the worker's batch function with scripted model scores (every other
step real: the feature store, the rules, the publisher to ``crm.alerts``). A crash is a
fresh worker re-running a batch: either before the batch was published (alerts lost with
the process) or after it was published but before it was committed (the batch is
redelivered).

``crm.alerts`` must then hold exactly the expected triggers: nothing more, no id with two
different contents, and repeats only of a batch that was redelivered after publishing.

The last test runs the real ``crm worker`` (SIGKILLed mid-story in one variant) on the kinds
that rules decide from the events alone (carts, low CSAT), since the learnt models' scores
cannot be scripted there.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from redis import Redis as SyncRedis

from agents.batch import Worker, process_batch
from agents.decoding import RawMessage
from feature_store.keys import METRICS_KEY, SUPPRESSED_KEY, progress_key
from feature_store.store import FeatureStore
from schemas.events import AnyEvent, topic_for
from schemas.records import Alert
from schemas.topics import ALERTS, CLICKS, PURCHASES, TICKETS
from simulator import TOPIC_BY_TYPE
from stream.processes import ManagedProcess
from stream.producer import EventProducer
from stream.settings import Settings, kafka_client_config
from tests.helpers import wait_for
from tests.unit.support import ScriptedModels, batch_worker, click, purchase, ticket

DAY = 24 * 60
LATENESS_MS = 5 * 60_000
PARTITIONS = {"anna": 0, "ben": 1, "cleo": 2, "dan": 0, "eve": 1, "clock": 0}


@dataclass
class Step:
    event: AnyEvent
    scores: dict[str, Any] = field(default_factory=dict)


@dataclass
class Story:
    steps: list[Step]
    expected: set[tuple[str, str, str]]  # (customer, kind, triggered_by)
    suppressed: dict[str, int] = field(default_factory=dict)  # kind -> by consent


def churn_story() -> Story:
    probabilities = [0.4, 0.72, 0.75, 0.8, 0.85, 0.66, 0.9, 0.9, 0.9, 0.5, 0.8, 0.8, 0.8]
    steps = []
    for customer, consent in (("anna", None), ("ben", False)):
        for day, probability in enumerate(probabilities):
            steps.append(Step(click(f"{customer}-d{day}", customer, day * DAY, consent=consent),
                              {"churn_probability": probability, "churn_explanation": [
                                  {"feature": "order_recency_days", "value": 30.0 + day,
                                   "contribution": 1.1}]}))
    steps.sort(key=lambda s: s.event.occurred_at)
    # anna: 3rd consecutive on day 3; hovering until day 9 re-arms; again on day 12 (> 7 days).
    return Story(steps, {("anna", "churn_risk", "anna-d3"), ("anna", "churn_risk", "anna-d12")},
                 {"churn_risk": 2})


def high_value_story() -> Story:
    percentiles = [0.5, 0.9, 0.991, 0.995, 0.98, 0.992, 0.95, 0.999]
    steps = [Step(purchase(f"cleo-p{i}", "cleo", i * 10 * DAY, total=100.0 + i),
                  {"clv": 1000.0 * (i + 1), "clv_percentile": p})
             for i, p in enumerate(percentiles)]
    return Story(steps, {("cleo", "high_value", "cleo-p2"), ("cleo", "high_value", "cleo-p7")})


def negative_ticket_story() -> Story:
    steps = [
        Step(ticket("t1", "dan", 0, consent=False), {"sentiment": -0.8, "urgency": 0.9}),
        Step(ticket("t2", "dan", 60, status="replied"), {"sentiment": -0.9, "urgency": 0.9}),
        Step(ticket("t3", "dan", DAY, status="resolved", csat=1), {"sentiment": 0.1,
                                                                    "urgency": 0.1}),
        Step(ticket("t4", "eve", 0), {"sentiment": 0.4, "urgency": 0.1}),
        Step(ticket("t5", "eve", 30, status="resolved", csat=4), {"sentiment": -0.1,
                                                                   "urgency": 0.3}),
    ]
    return Story(steps, {("dan", "negative_ticket", "t1"), ("dan", "negative_ticket", "t3")})


def anomalous_purchase_story() -> Story:
    scores = [0.1, 0.2, 0.97, 0.3, 0.92]
    steps = [Step(purchase(f"eve-p{i}", "eve", i * 3 * DAY, total=950.0 if s > 0.9 else 40.0),
                  {"anomaly_score": s, "anomaly_reason": f"order {i} is {s:.0%} odd"})
             for i, s in enumerate(scores)]
    return Story(steps, {("eve", "anomalous_purchase", "eve-p2"),
                         ("eve", "anomalous_purchase", "eve-p4")})


def cart_story() -> Story:
    add = "add_to_cart"
    steps = [
        Step(click("anna-a1", "anna", 0, kind=add)),  # abandoned
        Step(click("dan-a1", "dan", 1, kind=add)),  # bought 10 minutes later
        Step(click("ben-a1", "ben", 2, kind=add, consent=False)),  # no consent
        Step(click("cleo-a1", "cleo", 3, kind=add)),  # added again: one alert, for the 2nd add
        Step(purchase("dan-p1", "dan", 11)),
        Step(click("cleo-a2", "cleo", 20, kind=add)),
        Step(click("anna-v1", "anna", 25)),
        Step(click("clock-1", "clock", 40)),
        Step(click("ben-v1", "ben", 45)),
        Step(click("cleo-v1", "cleo", 50)),
        Step(purchase("clock-p1", "clock", 60)),  # moves partition 0's purchases watermark
        Step(click("clock-2", "clock", 90)),
        Step(click("ben-v2", "ben", 90)),
        Step(click("cleo-v2", "cleo", 90)),
        Step(purchase("ben-p0", "ben", 95)),
        Step(purchase("cleo-p0", "cleo", 95)),
        Step(click("ben-v3", "ben", 120)),
        Step(click("cleo-v3", "cleo", 120)),
    ]
    return Story(steps, {("anna", "cart_abandonment", "anna-a1"),
                         ("cleo", "cart_abandonment", "cleo-a2")}, {"cart_abandonment": 1})


def segment_story() -> Story:
    moves = [(1, None), (1, 1), (2, 1), (2, 2), (3, 2), (3, 3), (1, 3)]
    labels = {1: "Bargain hunters", 2: "Loyal high spenders", 3: "Window shoppers"}
    steps = [Step(click(f"ben-s{i}", "ben", i * 2 * DAY),
                  {"segment": seg, "segment_label": labels[seg], "previous_segment": prev})
             for i, (seg, prev) in enumerate(moves)]
    # Moves on days 4 and 8 (within 7 days of day 4: cooldown) and 12.
    return Story(steps, {("ben", "segment_change", "ben-s2"), ("ben", "segment_change", "ben-s6")})


STORIES: dict[str, Callable[[], Story]] = {
    "churn_risk": churn_story, "high_value": high_value_story,
    "negative_ticket": negative_ticket_story, "anomalous_purchase": anomalous_purchase_story,
    "cart_abandonment": cart_story, "segment_change": segment_story,
}


class MiniPipeline:
    """The worker's batch with scripted scores, and a crash switch."""

    def __init__(self, settings: Settings, store: FeatureStore, scores: dict[str, Any]
                 ) -> None:
        self.settings = settings
        self.store = store
        self.scores = scores
        self.worker = self.restarted()

    def restarted(self) -> Worker:
        return batch_worker(self.store, self.settings, models=ScriptedModels(self.scores),
                            lateness_ms=LATENESS_MS)

    def messages(self, steps: list[Step]) -> list[RawMessage]:
        """The batch's messages, each event on its customer's partition."""
        offsets = self.offsets
        messages = []
        for step in steps:
            key = (self.settings.topic(topic_for(step.event)),
                   PARTITIONS[step.event.customer_id or ""])
            offsets[key] = offsets.get(key, -1) + 1
            messages.append(RawMessage(*key, offsets[key], orjson.dumps(
                step.event.model_dump(mode="json", exclude_none=True))))
        return messages

    offsets: dict[tuple[str, int], int] = {}

    async def process(self, messages: list[RawMessage], crash: str | None = None) -> None:
        """One micro-batch; ``crash`` = "before_publish" | "before_progress" kills it there
        (the next batch is then processed by a restarted worker)."""
        worker = self.worker
        if crash == "before_publish":
            worker.alerts.publish = _crash  # type: ignore[method-assign]
        elif crash == "before_progress":
            worker.store = _CrashingCommit(self.store)  # type: ignore[assignment]
        try:
            await process_batch(worker, messages)
        except _Crash:
            self.worker = self.restarted()


class _Crash(Exception):
    pass


async def _crash(*args: object, **kwargs: object) -> None:
    raise _Crash


class _CrashingCommit:
    """The store, dying at the commit."""

    def __init__(self, store: FeatureStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def commit(self, commit: object) -> None:
        raise _Crash


def read_until(settings: Settings, wanted: Callable[[list[Alert]], bool], quiet_s: float = 4.0,
               timeout_s: float = 120.0) -> list[Alert]:
    """Every alert on the topic, once ``wanted`` holds and nothing arrived for ``quiet_s``."""
    consumer = Consumer({**kafka_client_config(settings), "group.id": f"{settings.app_id}-read",
                         "enable.auto.commit": False})
    topic = settings.topic(ALERTS)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                     for p in range(settings.partitions)])
    alerts: list[Alert] = []
    deadline, last = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                if wanted(alerts) and time.monotonic() - last > quiet_s:
                    break
                continue
            last = time.monotonic()
            alert = Alert.model_validate(orjson.loads(message.value()))
            assert message.key() == alert.customer_id.encode(), "keyed by customer"
            alerts.append(alert)
    finally:
        consumer.close()
    return alerts


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.mark.parametrize("crash", [None, "crash"])
@pytest.mark.parametrize("kind", list(STORIES))
async def test_story_yields_exactly_the_expected_alerts(
    kind: str, crash: str | None, settings: Settings, redis: aioredis.Redis
) -> None:
    """Verify that a scripted story puts exactly its expected alerts on crm.alerts, also when
    the process dies before publishing every odd batch and before recording the progress of
    every even one."""
    story = STORIES[kind]()
    scores = {step.event.event_id: step.scores for step in story.steps}
    pipeline = MiniPipeline(settings, FeatureStore(redis=redis), scores)
    pipeline.offsets = {}
    batches = [story.steps[i:i + 3] for i in range(0, len(story.steps), 3)]
    redelivered_after_publish: set[str] = set()
    for index, batch in enumerate(batches):
        messages = pipeline.messages(batch)
        if crash and index % 2:
            await pipeline.process(messages, crash="before_publish")
        elif crash:
            await pipeline.process(messages, crash="before_progress")
            redelivered_after_publish.update(step.event.event_id for step in batch)
        await pipeline.process(messages)

    alerts = read_until(settings, lambda found: len(found) >= len(story.expected),
                        quiet_s=2.0, timeout_s=60.0)
    seen = {(a.customer_id, a.kind.value, a.triggered_by) for a in alerts}
    assert seen == story.expected, f"{kind}: {[a.reason for a in alerts]}"
    by_id: dict[str, Alert] = {}
    for alert in alerts:
        assert by_id.setdefault(alert.alert_id, alert) == alert, "one content per alert id"
    repeated = [a for a in alerts if alerts.count(a) > 1]
    if crash is None:
        assert not repeated, "without a crash every alert is published once"
    for alert in repeated:  # a cart fired by a redelivered batch's watermark counts too
        assert alert.triggered_by in redelivered_after_publish or kind == "cart_abandonment"
    for alert in by_id.values():
        assert alert.reason and alert.explanation, alert
    suppressed = {k.decode(): int(v) for k, v in (await redis.hgetall(SUPPRESSED_KEY)).items()}
    assert suppressed == story.suppressed


def test_inputs_are_the_contract_topics() -> None:
    """Verify that the stories use the same input topics the worker consumes."""
    assert {topic_for(step.event) for build in STORIES.values() for step in build().steps} == {
        CLICKS, PURCHASES, TICKETS}


# -- the same through the real worker (SDK → Kafka → crm worker → crm.alerts) ----------------

WORKER_KINDS = {"cart_abandonment", "negative_ticket"}  # decided by rules, not by learnt models


def worker_story() -> tuple[list[list[dict[str, Any]]], set[tuple[str, str, str]]]:
    """Two phases of events (the second moves every partition's watermark past the carts)."""
    def ev(event: AnyEvent) -> dict[str, Any]:
        return event.model_dump(mode="json", exclude_none=True)

    add = "add_to_cart"
    kind_ticket = ticket("eve-t1", "eve", 5)
    happy = kind_ticket.model_copy(update={"subject": "Question about sizes",
                                           "body": "Thank you, great service, happy customer"})
    resolved_badly = ticket("eve-t2", "eve", 50, status="resolved", csat=1).model_copy(
        update={"subject": "", "body": ""})
    resolved_well = ticket("fay-t1", "fay", 40, status="resolved", csat=5).model_copy(
        update={"subject": "Happy with my order", "body": "Thanks a lot, excellent delivery"})
    story = [
        ev(click("anna-a1", "anna", 0, kind=add)),
        ev(click("dan-a1", "dan", 1, kind=add)),
        ev(click("ben-a1", "ben", 2, kind=add, consent=False)),
        ev(click("cleo-a1", "cleo", 3, kind=add)),
        ev(happy),
        ev(purchase("dan-p1", "dan", 11)),
        ev(click("cleo-a2", "cleo", 20, kind=add)),
        ev(resolved_well),
        ev(resolved_badly),
    ]
    clock = [ev(click(f"clock-{i}-v", f"clock-{i}", 240)) for i in range(30)]
    clock += [ev(purchase(f"clock-{i}-p", f"clock-{i}", 240)) for i in range(30)]
    expected = {("anna", "cart_abandonment", "anna-a1"), ("cleo", "cart_abandonment", "cleo-a2"),
                ("eve", "negative_ticket", "eve-t2")}
    return [story, clock], expected


@pytest.mark.parametrize("crash", [None, "sigkill"])
def test_worker_story_yields_exactly_the_expected_alerts(
    crash: str | None, settings: Settings, start_worker: Callable[..., ManagedProcess]
) -> None:
    """Verify that the running worker puts exactly the rule-decided alerts of a story on
    crm.alerts, also when it is SIGKILLed mid-story and restarted."""
    phases, expected = worker_story()
    client = SyncRedis.from_url(settings.redis_url)
    last_offsets: dict[tuple[str, int], int] = {}

    def delivered(topic: str, partition: int, offset: int) -> None:
        last_offsets[(topic, partition)] = max(last_offsets.get((topic, partition), -1), offset)

    def caught_up() -> bool:
        done = client.mget([progress_key(t, p) for t, p in last_offsets])
        return all(value is not None and int(value) >= last_offsets[key]
                   for key, value in zip(last_offsets, done, strict=True))

    worker = start_worker("worker-1", allowed_lateness_s=60.0)
    for index, phase in enumerate(phases):
        with EventProducer(settings=settings) as producer:
            for event in phase:
                producer.send_raw(settings.topic(TOPIC_BY_TYPE[event["type"]]),
                                  event["customer_id"], orjson.dumps(event),
                                  on_delivered=delivered)
        if crash and index == 0:
            wait_for(lambda: client.hlen(METRICS_KEY), timeout=120, alive=[worker],
                     what="the worker to process part of the story", interval=0.02)
            worker.kill()  # SIGKILL: no shutdown, no final commit
            worker = start_worker("worker-2", allowed_lateness_s=60.0)
        wait_for(caught_up, timeout=180, alive=[worker], what=f"phase {index} to be processed")

    def story_alerts(alerts: list[Alert]) -> set[tuple[str, str, str]]:
        return {(a.customer_id, a.kind.value, a.triggered_by) for a in alerts
                if a.kind.value in WORKER_KINDS}

    alerts = read_until(settings, lambda found: story_alerts(found) >= expected)
    assert story_alerts(alerts) == expected, [a.reason for a in alerts]
    by_id: dict[str, Alert] = {}
    for alert in alerts:
        assert by_id.setdefault(alert.alert_id, alert) == alert, "one content per alert id"
    if crash is None:
        assert len(by_id) == len(alerts), "without a crash every alert is published once"
    assert int(client.hget(SUPPRESSED_KEY, "cart_abandonment") or 0) == 1  # ben: no consent
