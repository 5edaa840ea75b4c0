"""GET /v1/alerts/stream on a real server: live, tenant-filtered, and gone when the client is."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import orjson
import redis

from feature_store.keys import ALERTS_STREAM_KEY
from stream.settings import Settings
from tests.helpers import wait_for
from tests.integration.support import ApiServer


def _alert(tenant: str, customer_id: str) -> dict[str, bytes | str]:
    alert = {"alert_id": f"al_{customer_id}", "kind": "churn_risk", "customer_id": customer_id,
             "tenant": tenant, "score": 0.91, "threshold": 0.7,
             "reason": "No order for 60 days after 4 orders.", "explanation": [],
             "triggered_by": "e1", "occurred_at": "2026-03-01T10:00:00Z",
             "emitted_at": "2026-03-01T10:00:01Z", "model_version": "churn-v1"}
    return {"alert": orjson.dumps(alert), "tenant": tenant, "kind": "churn_risk"}


def _events(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.lstrip(" ")


def _xread_clients(client: redis.Redis) -> int:
    return sum(1 for c in client.client_list() if c.get("cmd") in {"xread", "blocking"})


def test_stream_delivers_new_alerts_of_the_tenant_only(
    api_server: ApiServer, settings: Settings
) -> None:
    """Verify that an XADDed alert arrives as an SSE event, another tenant's does not, and the
    server lets go of Redis once the client disconnects."""
    store = redis.Redis.from_url(settings.redis_url)
    received: list[dict[str, str]] = []
    connected = threading.Event()

    def listen() -> None:
        with httpx.Client(base_url=api_server.url, headers=api_server.headers,
                          timeout=httpx.Timeout(10, read=30)) as client, client.stream(
                "GET", "/v1/alerts/stream") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            connected.set()
            for event in _events(response.iter_lines()):
                received.append(event)
                if event.get("event") == "alert":
                    return  # closing the stream disconnects

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert connected.wait(10)
    wait_for(lambda: _xread_clients(store) >= 1, timeout=10, what="the stream to be waiting")
    store.xadd(ALERTS_STREAM_KEY, _alert("elsewhere", "theirs"))
    time.sleep(0.3)
    store.xadd(ALERTS_STREAM_KEY, _alert("default", "ours"))
    listener.join(15)
    assert not listener.is_alive()
    alerts = [orjson.loads(e["data"]) for e in received if e.get("event") == "alert"]
    assert [a["customer_id"] for a in alerts] == ["ours"]
    assert received[-1]["id"].count("-") == 1  # the stream position, for Last-Event-ID
    wait_for(lambda: _xread_clients(store) == 0, timeout=15,
             what="the server to stop reading alerts for the gone client")


def test_last_event_id_resumes_where_the_client_left(
    api_server: ApiServer, settings: Settings
) -> None:
    """Verify that a reconnect with Last-Event-ID gets the alerts it missed."""
    store = redis.Redis.from_url(settings.redis_url)
    seen = store.xadd(ALERTS_STREAM_KEY, _alert("default", "seen")).decode()
    store.xadd(ALERTS_STREAM_KEY, _alert("default", "missed"))
    headers = {**api_server.headers, "Last-Event-ID": seen}
    with httpx.Client(base_url=api_server.url, headers=headers, timeout=10) as client, \
            client.stream("GET", "/v1/alerts/stream") as response:
        for event in _events(response.iter_lines()):
            if event.get("event") == "alert":
                assert orjson.loads(event["data"])["customer_id"] == "missed"
                break


def test_a_repeated_alert_id_is_sent_once_per_connection(
    api_server: ApiServer, settings: Settings
) -> None:
    """Verify that an alert id the stream already sent is not sent again (a repeat in the
    feed, e.g. after its two-day marker expired), while the alerts after it still come."""
    store = redis.Redis.from_url(settings.redis_url)
    for customer in ("ours", "ours", "later"):
        store.xadd(ALERTS_STREAM_KEY, _alert("default", customer))
    headers = {**api_server.headers, "Last-Event-ID": "0-0"}
    received = []
    with httpx.Client(base_url=api_server.url, headers=headers, timeout=10) as client, \
            client.stream("GET", "/v1/alerts/stream") as response:
        for event in _events(response.iter_lines()):
            if event.get("event") == "alert":
                received.append(orjson.loads(event["data"])["customer_id"])
                if received[-1] == "later":
                    break
    assert received == ["ours", "later"]
