"""Tickets triaged, revenue forecast and model drift, from the worker's batch to the API,
against a real redis-server: what support, finance and whoever watches the models read."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from agents.batch import Worker, process_batch
from agents.models import ModelStep
from agents.runtime import model_telemetry
from feature_store import FeatureStore
from online_models import ModelBundle
from schemas.events import AnyEvent, PurchaseEvent, TicketEvent
from schemas.records import AlertKind
from tests.integration.support import Api
from tests.unit.support import T0, FakeAlertProducer, Messages, batch_worker

TENANT = "shop1"


def a_ticket(event_id: str, customer: str, at_minutes: float, *, ticket_id: str,
             status: str = "opened", body: str = "", csat: int | None = None,
             category: str | None = None) -> TicketEvent:
    return TicketEvent.model_validate({
        "event_id": event_id, "tenant": TENANT, "customer_id": customer, "type": "ticket",
        "ticket_id": ticket_id, "status": status, "subject": "", "body": body, "csat": csat,
        "category": category, "occurred_at": T0 + timedelta(minutes=at_minutes)})


def a_purchase(event_id: str, customer: str, day: int, total: float,
               category: str = "books") -> PurchaseEvent:
    return PurchaseEvent.model_validate({
        "event_id": event_id, "tenant": TENANT, "customer_id": customer, "type": "purchase",
        "order_id": f"o-{event_id}", "currency": "EUR", "total": total,
        "items": [{"product_id": "p1", "quantity": 1, "unit_price": total,
                   "category": category}],
        "occurred_at": T0 + timedelta(days=day, hours=12)})


class Shop:
    """The worker's batch over the real store, alerts to a fake producer."""

    def __init__(self, api: Api) -> None:
        self.store = FeatureStore(redis=api.redis)
        self.producer = FakeAlertProducer()
        self.worker: Worker = batch_worker(self.store, api.settings,
                                           models=ModelStep(bundle=ModelBundle()),
                                           producer=self.producer)
        self.messages = Messages(api.settings)

    async def send(self, events: Sequence[AnyEvent]) -> None:
        await process_batch(self.worker, self.messages(events))

    async def publish_telemetry(self) -> None:
        """What the worker's telemetry timer publishes (models, forecasts)."""
        await self.store.publish_telemetry(model_telemetry(self.worker.models.bundle),
                                           at_ms=1, events_per_s=0.0, lag=None)
        await self.store.publish_forecasts("worker-1",
                                           self.worker.models.insights.forecast_payloads(),
                                           at_ms=int(time.time() * 1000))


async def test_a_ticket_is_served_triaged_and_erased_with_its_customer(api: Api) -> None:
    """Verify that GET /v1/tickets/{id} shows a ticket's category, urgency and sentiment
    from its text, its latest status, and that erasure removes it."""
    shop = Shop(api)
    headers = await api.key(TENANT)
    await shop.send([a_ticket("e1", "c1", 0, ticket_id="T-1", body=(
        "I was charged twice for one order. Unacceptable, refund me now!"))])
    body = (await api.client.get("/v1/tickets/T-1", headers=headers)).json()
    assert body["category"] == "billing" and body["status"] == "opened"
    assert body["customer_id"] == "c1" and body["sentiment"] < 0 < body["urgency"]
    await shop.send([a_ticket("e2", "c1", 30, ticket_id="T-1", status="resolved", csat=4,
                              category="billing", body="Refunded the second charge.")])
    body = (await api.client.get("/v1/tickets/T-1", headers=headers)).json()
    assert body["status"] == "resolved" and body["category"] == "billing"
    assert shop.worker.models.bundle.triage.example_count == 1
    listed = (await api.client.get("/v1/customers/c1/tickets", headers=headers)).json()
    assert [t["ticket_id"] for t in listed] == ["T-1"]
    assert (await api.client.get("/v1/tickets/T-2", headers=headers)).status_code == 404
    other = await api.key("shop2")
    assert (await api.client.get("/v1/tickets/T-1", headers=other)).status_code == 404
    await shop.store.erase(tenant=TENANT, customer_id="c1", block_seconds=0, receipt_id="r1")
    assert (await api.client.get("/v1/tickets/T-1", headers=headers)).status_code == 404


async def test_a_negative_ticket_alert_names_its_category_and_urgency(api: Api) -> None:
    """Verify that the negative_ticket alert says what the ticket is about and how urgent."""
    shop = Shop(api)
    await shop.send([a_ticket("e1", "c1", 0, ticket_id="T-9",
                              body="The parcel never arrived, this is awful. Where is it?")])
    [alert] = [a for a in shop.producer.alerts() if a.kind is AlertKind.NEGATIVE_TICKET]
    assert "delivery" in alert.reason and "urgency" in alert.reason


async def test_the_revenue_forecast_follows_a_weekly_pattern(api: Api) -> None:
    """Verify that after eight weeks of a shop selling three times as much at weekends,
    GET /v1/forecast serves the next week with the weekend on top, intervals around each
    day, and the closed days beside what was forecast for them."""
    shop = Shop(api)
    rng = random.Random(3)
    for day in range(8 * 7 + 1):
        weekend = (T0 + timedelta(days=day)).weekday() >= 5
        total = (300.0 if weekend else 100.0) * rng.uniform(0.95, 1.05)
        await shop.send([a_purchase(f"p{day}", f"c{day % 7}", day, round(total, 2))])
    await shop.publish_telemetry()
    headers = await api.key(TENANT)
    response = await api.client.get("/v1/forecast?granularity=day&horizon=7",
                                    headers=headers)
    forecast = response.json()
    assert response.status_code == 200, forecast
    assert forecast["status"] == "ready" and len(forecast["points"]) == 7
    weekend = [p["revenue"] for p in forecast["points"]
               if datetime.fromisoformat(p["start"]).weekday() >= 5]
    weekdays = [p["revenue"] for p in forecast["points"]
                if datetime.fromisoformat(p["start"]).weekday() < 5]
    assert len(weekend) == 2 and min(weekend) > 2 * max(weekdays)
    assert all(p["lower"] <= p["revenue"] <= p["upper"] for p in forecast["points"])
    assert any(h["forecast"] is not None for h in forecast["history"])
    last_week = forecast["history"][-7:]
    assert all(abs(h["forecast"] - h["revenue"]) < 0.3 * h["revenue"] for h in last_week)
    assert forecast["mase"] is not None and forecast["coverage"] is not None
    books = await api.client.get("/v1/forecast?category=books&horizon=3", headers=headers)
    assert books.status_code == 200 and len(books.json()["points"]) == 3
    too_far = await api.client.get("/v1/forecast?granularity=day&horizon=120", headers=headers)
    assert too_far.status_code == 422 and too_far.json()["problems"][0]["field"] == "horizon"
    unknown = await api.client.get("/v1/forecast?category=toys", headers=headers)
    assert unknown.status_code == 404


async def test_a_change_in_behaviour_is_detected_as_drift_and_alerted(api: Api) -> None:
    """Verify that when customers' CSAT stops agreeing with their tickets' words (a planted
    change after 400 tickets), the sentiment model's drift is found within 200 tickets: a
    model_drift alert goes out and /v1/models shows drifted_at."""
    shop = Shop(api)
    texts = {True: "Great service, thank you so much, very happy", False:
             "Terrible, broken and late, I am very angry"}
    rng = random.Random(5)
    found_after = None
    for i in range(800):
        happy = rng.random() < 0.5
        agrees = i < 400
        csat = 5 if happy == agrees else 1
        await shop.send([a_ticket(f"e{i}", f"c{i % 40}", i, ticket_id=f"T-{i}",
                                  status="resolved", body=texts[happy], csat=csat)])
        if any(a.kind is AlertKind.MODEL_DRIFT for a in shop.producer.alerts()):
            found_after = i - 400
            break
    assert found_after is not None and 0 <= found_after < 200, found_after
    [drift] = [a for a in shop.producer.alerts() if a.kind is AlertKind.MODEL_DRIFT]
    assert drift.tenant == TENANT and "sentiment" in drift.reason
    await shop.publish_telemetry()
    models = (await api.client.get("/v1/models", headers=await api.key(TENANT))).json()
    sentiment = next(m for m in models["models"] if m["name"] == "sentiment")
    assert sentiment["drifted_at"] is not None
    churn = next(m for m in models["models"] if m["name"] == "churn")
    assert churn["drifted_at"] is None
