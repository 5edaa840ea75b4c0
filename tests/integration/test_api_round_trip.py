"""The API against a real broker, redis-server and worker: ingest, read back, erase."""

from __future__ import annotations

from collections.abc import Callable

from stream.processes import ManagedProcess
from tests.helpers import wait_for
from tests.integration.support import ApiServer


def test_ingested_events_come_back_as_a_live_profile(
    api_server: ApiServer, start_worker: Callable[..., ManagedProcess]
) -> None:
    """Verify that events POSTed to /v1/events become GET /v1/customers/{id}'s features."""
    start_worker()
    with api_server.client() as client:
        response = client.post("/v1/events", json={"events": [
            {"event_id": "e1", "customer_id": "c1", "session_id": "s1", "type": "click",
             "kind": "product_view", "product_id": "p1", "category": "books",
             "occurred_at": "2026-03-01T10:00:00+00:00"},
            {"event_id": "e2", "customer_id": "c1", "session_id": "s1", "type": "purchase",
             "order_id": "o1", "currency": "EUR", "total": 25.0,
             "items": [{"product_id": "p1", "quantity": 2, "unit_price": 12.5}],
             "occurred_at": "2026-03-01T10:05:00+00:00"},
            {"event_id": "bad", "customer_id": "c1", "type": "click", "kind": "dance",
             "occurred_at": "2026-03-01T10:06:00+00:00"},
        ]})
        assert response.status_code == 202
        assert response.json()["accepted"] == 2
        assert response.json()["rejected"][0]["field"] == "kind"

        def profile() -> dict | None:  # type: ignore[type-arg]
            answer = client.get("/v1/customers/c1")
            body = answer.json() if answer.status_code == 200 else None
            # Clicks and purchases are separate topics, applied independently: wait for both.
            done = body and body["features"]["orders"] == 1 and body["features"]["views"] == 1
            return body if done else None

        body = wait_for(profile, timeout=60, what="c1's profile through the API")
        assert body["features"]["revenue"] == 25.0 and body["features"]["views"] == 1
        assert body["features"]["last_order_at"] == "2026-03-01T10:05:00Z"
        assert client.get("/readyz").json()["checks"] == {"redis": "ok", "broker": "ok"}


def test_erasure_receipt_goes_from_pending_to_done(
    api_server: ApiServer, start_worker: Callable[..., ManagedProcess]
) -> None:
    """Verify that DELETE /v1/customers/{id} erases through the worker and the receipt says so."""
    start_worker()
    with api_server.client() as client:
        client.post("/v1/events", json={"events": [
            {"event_id": "e1", "customer_id": "gone", "type": "click", "kind": "page_view",
             "occurred_at": "2026-03-01T10:00:00+00:00"}]})
        wait_for(lambda: client.get("/v1/customers/gone").status_code == 200, timeout=60,
                 what="the customer to exist")
        erased = client.delete("/v1/customers/gone")
        assert erased.status_code == 202
        status_url = erased.json()["status_url"]
        first = client.get(status_url).json()["status"]
        assert first in {"pending", "done"}
        wait_for(lambda: client.get(status_url).json()["status"] == "done", timeout=60,
                 what="the erasure receipt to turn done")
        assert client.get("/v1/customers/gone").status_code == 404
