"""Helpers the tests share: events and customer updates at minutes from one start, a fake
Kafka producer for the alerts, a small synthetic shop that trains every model, and a
worker's batch steps with scripted model scores.

Nothing here is a test; unit and integration tests import these helpers.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from confluent_kafka import KafkaError

from agents.alert_config import AlertConfig, AlertConfigWatcher
from agents.alert_rules import CustomerUpdate
from agents.batch import Worker
from agents.decoding import RawMessage
from agents.models import ModelEvent, ModelStep, Scored
from agents.partitions import Partitions
from agents.publishing import AlertPublisher
from agents.rules import AlertRules
from feature_store import Customer, CustomerKey
from online_models.checkpoint import ModelBundle
from online_models.drift import DriftEvent
from online_models.features import DAY_MS, behaviour_vector
from online_models.triage import TicketCategory
from schemas.events import AnyEvent, ClickEvent, PurchaseEvent, TicketEvent, topic_for
from schemas.records import Alert
from schemas.topics import CLICKS, PURCHASES
from stream.settings import Settings

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
MINUTE_MS = 60_000


def at(minutes: float) -> datetime:
    """Event time ``minutes`` after the story's start."""
    return T0 + timedelta(minutes=minutes)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def click(event_id: str, customer: str, minutes: float, kind: str = "page_view",
          product: str | None = "p-1", consent: bool | None = None) -> ClickEvent:
    return ClickEvent(event_id=event_id, customer_id=customer, type="click", kind=kind,
                      product_id=product, occurred_at=at(minutes), marketing_consent=consent)


def purchase(event_id: str, customer: str, minutes: float, total: float = 40.0,
             consent: bool | None = None) -> PurchaseEvent:
    return PurchaseEvent(event_id=event_id, customer_id=customer, type="purchase",
                         order_id=f"o-{event_id}", currency="EUR", total=total,
                         items=[{"product_id": "p-1", "quantity": 1, "unit_price": total}],
                         occurred_at=at(minutes), marketing_consent=consent)


def ticket(event_id: str, customer: str, minutes: float, status: str = "opened",
           csat: int | None = None, consent: bool | None = None) -> TicketEvent:
    return TicketEvent(event_id=event_id, customer_id=customer, type="ticket",
                       ticket_id=f"t-{event_id}", status=status, csat=csat,
                       subject="order", body="where is my order", occurred_at=at(minutes),
                       marketing_consent=consent)


def update(event: ClickEvent | PurchaseEvent | TicketEvent, *, consent: bool | None = None,
           features: Mapping[str, Any] | None = None, partition: int | None = 0,
           **scores: Any) -> CustomerUpdate:
    assert event.customer_id is not None
    return CustomerUpdate(
        tenant=event.tenant, customer_id=event.customer_id, event=event,
        features=dict(features or {}),
        scores={"model_versions": {"churn": "churn-7", "clv": "clv-3", "sentiment": "sent-2",
                                   "anomaly": "anom-5", "segments": "seg-4"}, **scores},
        marketing_consent=consent if consent is not None else event.marketing_consent,
        partition=partition)


@dataclass
class FakeMessage:
    key_: str

    def key(self) -> str:
        return self.key_


@dataclass
class FakeAlertProducer:
    """Records what the engine produces and reports each delivery on flush, as librdkafka
    does; ``unsent`` makes the next flush leave that many of the last messages undelivered
    (they are delivered by a later flush); ``failing`` makes it report that many of the
    last messages failed, as when they time out while the broker is away (they are gone)."""

    messages: list[tuple[str, str, bytes]] = field(default_factory=list)
    unsent: int = 0
    failing: int = 0
    queued: list[tuple[str, Any]] = field(default_factory=list)

    def produce(self, topic: str, value: bytes, key: str, on_delivery: Any = None) -> None:
        self.messages.append((topic, key, value))
        self.queued.append((key, on_delivery))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        failing, self.failing = min(self.failing, len(self.queued)), 0
        for key, on_delivery in self.queued[len(self.queued) - failing:]:
            if on_delivery is not None:
                on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), FakeMessage(key))
        self.queued = self.queued[:len(self.queued) - failing]
        unsent, self.unsent = min(self.unsent, len(self.queued)), 0
        delivered = self.queued[:len(self.queued) - unsent]
        self.queued = self.queued[len(self.queued) - unsent:]
        for key, on_delivery in delivered:
            if on_delivery is not None:
                on_delivery(None, FakeMessage(key))
        return unsent

    def alerts(self) -> list[Alert]:
        return [Alert.model_validate(orjson.loads(value)) for _, _, value in self.messages]


PRODUCTS = [f"p{i}" for i in range(30)]
TICKETS: list[tuple[str, TicketCategory]] = [
    ("charged twice", "billing"), ("parcel is late", "delivery"), ("zip broke", "product"),
    ("cannot log in", "account"), ("nice shop", "other")]


def feed(bundle: ModelBundle, days: int, seed: int, start_day: int = 0) -> dict[str, dict]:
    """A small synthetic shop touching every model; returns the final profiles."""
    rng = random.Random(seed)
    profiles: dict[str, dict] = {}
    for day in range(start_day, start_day + days):
        at = day * DAY_MS
        bundle.churn.advance_watermark(at)
        bundle.clv.advance_watermark(at)
        for bucket in bundle.forecast.advance_watermark(at):
            if bucket.scaled_error is not None:
                bundle.drift.update("forecast", bucket.scaled_error, bucket.end_ms)
        for _ in range(20):
            cid = f"c{rng.randrange(40)}"
            total = rng.uniform(10, 200)
            profile = profiles.setdefault(
                cid,
                {
                    "orders": 0,
                    "revenue": 0.0,
                    "first_seen_at": at,
                    "recent_products": [],
                    "category_affinity": {"music": 1.0},
                },
            )
            profile["orders"] += 1
            profile["revenue"] += total
            profile["avg_order_value"] = profile["revenue"] / profile["orders"]
            profile["last_seen_at"] = profile["last_order_at"] = at
            product = rng.choice(PRODUCTS)
            bundle.recommender.learn(
                cid, product, "purchase", at, recent=profile["recent_products"]
            )
            profile["recent_products"] = [product, *profile["recent_products"]][:5]
            bundle.churn.observe_activity(cid, profile, at)
            bundle.clv.observe_activity(cid, profile, at, purchases=1, spend=total)
            bundle.segments.learn("default", cid, behaviour_vector(profile))
            bundle.anomaly.learn(total, basket_size=rng.randint(1, 5))
            bundle.sentiment.learn(
                rng.choice(["great thanks", "broken box", "late again"]), rng.choice([1, 5])
            )
            bundle.forecast.observe_purchase("default", at + rng.randrange(DAY_MS), total,
                                             {"music": total})
            text, category = rng.choice(TICKETS)
            served = bundle.triage.learn(text, category)
            bundle.drift.update("triage", float(served.category != category), at)
    return profiles


class ScriptedModels(ModelStep):
    """The models step with scripted scores (by event id), for stories whose scores a
    learning model could not be made to give: every other step of the batch is real.
    ``drifts``: found by the first batch (as a model's drift detector finds one once)."""

    def __init__(self, scores: Mapping[str, Mapping[str, Any]] | None = None,
                 drifts: Sequence[DriftEvent] = ()) -> None:
        super().__init__(bundle=ModelBundle())
        self.scores = dict(scores or {})
        self.drifts = list(drifts)

    def learn_and_score(self, events: Sequence[ModelEvent],
                        customers: Mapping[CustomerKey, Customer],
                        clv_rankings: Mapping[str, Any], watermark_ms: int | None) -> Scored:
        return Scored(updates=[CustomerUpdate(
            tenant=e.customer[0], customer_id=e.customer[1], event=e.event,
            features=customers[e.customer].profile,
            scores={"model_versions": {"churn": "churn-7", "clv": "clv-3"},
                    **self.scores.get(e.event.event_id, {})},
            marketing_consent=customers[e.customer].marketing_consent, partition=e.partition)
            for e in events if e.customer in customers], drifts=self._found(customers))

    def _found(self, customers: Mapping[CustomerKey, Customer]) -> list[DriftEvent]:
        self.tenants_seen.update(tenant for tenant, _ in customers)  # drift alerts go to each
        found, self.drifts = self.drifts, []
        return found


def triage_drift(at_ms: int) -> DriftEvent:
    """The triage model's error rose from 10% to 60% (a drift detector's finding)."""
    return DriftEvent(model="triage", at_ms=at_ms, examples=900, error_before=0.1,
                      error_after=0.6, window=100)


class NoDeadLetters:
    """For stories whose events are all valid: a dead letter fails the test."""

    async def publish_all(self, dead_letters: Sequence[Any]) -> None:
        assert not dead_letters, dead_letters


def batch_worker(store: Any, settings: Settings, *, models: ModelStep | None = None,
                 producer: Any = None, config: AlertConfig | AlertConfigWatcher | None = None,
                 lateness_ms: int = 0) -> Worker:
    """A worker's batch steps as after a (re)start: nothing but the store carries over.
    ``producer`` None: a real one to the settings' broker."""
    return Worker(
        store=store,
        partitions=Partitions(allowed_lateness_ms=lateness_ms, activity_topics=frozenset(
            settings.topic(name) for name in (CLICKS, PURCHASES))),
        dead_letters=NoDeadLetters(),
        models=models or ModelStep(bundle=ModelBundle()),
        rules=AlertRules(config=config or AlertConfig(), clicks_topic=settings.topic(CLICKS),
                         purchases_topic=settings.topic(PURCHASES)),
        alerts=AlertPublisher(settings=settings, producer=producer),
        max_event_bytes=65_536)


class Messages:
    """Events as the messages of their topics' partitions, offsets counted per partition."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.offsets: dict[tuple[str, int], int] = {}

    def __call__(self, events: Sequence[AnyEvent], partition: int = 0) -> list[RawMessage]:
        messages = []
        for event in events:
            key = (self.settings.topic(topic_for(event)), partition)
            self.offsets[key] = self.offsets.get(key, -1) + 1
            messages.append(RawMessage(*key, self.offsets[key], orjson.dumps(
                event.model_dump(mode="json", exclude_none=True))))
        return messages
