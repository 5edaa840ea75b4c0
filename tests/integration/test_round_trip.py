"""Producer SDK → Kafka → Faust worker → Redis → read back, on a real broker and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import redis

from feature_store.keys import CustomerKeys
from feature_store.reads import ProfileReader, SystemReader
from stream.processes import ManagedProcess
from stream.producer import EventProducer
from stream.settings import Settings
from tests.helpers import wait_for


def _profile(settings: Settings, customer_id: str):  # type: ignore[no-untyped-def]
    async def read():  # type: ignore[no-untyped-def]
        client = redis.asyncio.Redis.from_url(settings.redis_url)
        try:
            return await ProfileReader(redis=client).profile("default", customer_id)
        finally:
            await client.aclose()

    return asyncio.run(read())


def _read(settings: Settings, read):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        client = redis.asyncio.Redis.from_url(settings.redis_url)
        try:
            return await read(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_events_round_trip_into_live_features(
    settings: Settings, start_worker: Callable[..., ManagedProcess]
) -> None:
    """Verify that events sent with the SDK become a customer's features in Redis, their
    product interactions a recommendation list (from the worker's recommender process), the
    ticket a triaged ticket, and the purchase a revenue series to forecast."""
    worker = start_worker()
    with EventProducer(settings=settings) as producer:
        producer.send({"event_id": "e1", "customer_id": "c1", "session_id": "s1",
                       "type": "click", "kind": "product_view", "product_id": "p1",
                       "category": "books", "occurred_at": "2026-03-01T10:00:00+00:00"})
        producer.send({"event_id": "e2", "customer_id": "c1", "session_id": "s1",
                       "type": "purchase", "order_id": "o1", "currency": "EUR",
                       "items": [{"product_id": "p1", "quantity": 2, "unit_price": 12.5,
                                  "category": "books"}],
                       "total": 25.0, "occurred_at": "2026-03-01T10:05:00+00:00"})
        producer.send({"event_id": "e3", "customer_id": "c1", "type": "ticket",
                       "ticket_id": "t1", "status": "opened", "subject": "Where is my order?",
                       "occurred_at": "2026-03-01T11:00:00+00:00"})

    def complete():  # type: ignore[no-untyped-def]
        # Three topics: the worker may take their events in any order, so all three.
        profile = _profile(settings, "c1")
        if profile and all((profile.features.views, profile.features.orders,
                            profile.features.tickets_total)):
            return profile
        return None

    profile = wait_for(complete, timeout=60, what="the worker to write c1's features",
                       alive=[worker])
    features = profile.features
    assert (features.orders, features.revenue, features.items_bought) == (1, 25.0, 2)
    assert (features.views, features.product_views, features.sessions) == (1, 1, 1)
    assert (features.tickets_total, features.open_tickets) == (1, 1)
    assert features.last_order_at is not None
    assert features.last_order_at.isoformat() == "2026-03-01T10:05:00+00:00"
    assert features.category_affinity[0].category == "books"
    assert features.recent_products == ["p1"]

    recos = CustomerKeys("default", "c1").recos
    listed = wait_for(lambda: redis.Redis.from_url(settings.redis_url).get(recos), timeout=60,
                      what="the recommender process to write c1's list", alive=[worker])
    assert all({"product_id", "score", "source"} <= set(item) for item in orjson.loads(listed))

    ticket = _read(settings, lambda client: ProfileReader(redis=client).ticket("default", "t1"))
    assert ticket is not None and ticket.category == "delivery" and ticket.status == "opened"
    assert ticket.customer_id == "c1" and ticket.urgency is not None

    def forecast():  # type: ignore[no-untyped-def]
        return _read(settings, lambda client: SystemReader(redis=client).forecast(
            "default", category="books", granularity="day", horizon=7))

    series = wait_for(forecast, timeout=60, what="the worker to publish its forecasts",
                      alive=[worker])
    assert series.status == "warming_up" and series.points == []
