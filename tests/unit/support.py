"""Helpers the tests share: events and customer updates at minutes from one start, a fake
Kafka producer for the alert engine, and a small synthetic shop that trains every model.

Nothing here is a test; unit and integration tests import these helpers.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from agents.alert_rules import CustomerUpdate
from online_models.checkpoint import ModelBundle
from online_models.features import DAY_MS, behaviour_vector
from online_models.triage import TicketCategory
from schemas.events import ClickEvent, PurchaseEvent, TicketEvent
from schemas.records import Alert

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
    (they are delivered by a later flush)."""

    messages: list[tuple[str, str, bytes]] = field(default_factory=list)
    unsent: int = 0
    queued: list[tuple[str, Any]] = field(default_factory=list)

    def produce(self, topic: str, value: bytes, key: str, on_delivery: Any = None) -> None:
        self.messages.append((topic, key, value))
        self.queued.append((key, on_delivery))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
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
