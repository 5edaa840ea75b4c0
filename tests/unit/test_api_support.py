"""Shared pieces of the API unit tests: an app on a real redis-server, a fake producer.

Nothing here is a test; the test modules import these fixtures.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from api.keys import create_key
from api.main import create_app
from api.settings import ApiSettings
from feature_store.keys import ALERTS_STREAM_KEY, CustomerKeys, customers_key, ranking_key
from stream.producer import AnyEvent, DeliveryError, DeliveryReport
from stream.settings import Settings


@dataclass
class FakeProducer:
    """Records what the API publishes; ``fail`` makes the next flush fail."""

    events: list[AnyEvent] = field(default_factory=list)
    raw: list[tuple[str, Any, bytes]] = field(default_factory=list)
    report: DeliveryReport = field(default_factory=DeliveryReport)
    fail: bool = False

    def send(self, event: AnyEvent) -> AnyEvent:
        self.events.append(event)
        return event

    def send_raw(self, topic: str, key: Any, value: bytes) -> None:
        self.raw.append((topic, key, value))

    def flush(self, timeout: float = 30.0) -> DeliveryReport:
        if self.fail:
            self.fail = False
            self.report.failed += 1
            raise DeliveryError("1 events failed delivery: broker down")
        return self.report


@dataclass
class Api:
    client: httpx.AsyncClient
    redis: aioredis.Redis
    producer: FakeProducer
    app: FastAPI
    settings: Settings

    async def key(self, tenant: str = "shop1", scopes: str = "read,ingest,admin",
                  rate_limit: int | None = None) -> dict[str, str]:
        key = await create_key(self.redis, tenant, scopes, "test", rate_limit=rate_limit)
        return {"Authorization": f"Bearer {key}"}


def click(event_id: str = "e1", customer_id: str = "c1", **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "customer_id": customer_id, "type": "click",
            "kind": "product_view", "product_id": "p1",
            "occurred_at": "2026-03-01T10:00:00+00:00", **extra}


async def put_profile(redis: aioredis.Redis, tenant: str, customer_id: str,
                      **fields: Any) -> None:
    """A customer as the worker would have written it (a few fields)."""
    mapping = {"views": 3, "orders": 1, "revenue_cents": 2500, "updated_at": 1772359200000,
               "last_seen_at": 1772359200000, **fields}
    await redis.hset(CustomerKeys(tenant, customer_id).profile, mapping=mapping)
    await redis.zadd(customers_key(tenant), {customer_id: 1772359200000})
    if "churn_probability" in fields:
        await redis.zadd(ranking_key(tenant, "churn"),
                         {customer_id: float(fields["churn_probability"])})


async def add_alert(redis: aioredis.Redis, tenant: str, customer_id: str,
                    kind: str = "churn_risk", alert_id: str | None = None) -> bytes:
    alert = {"alert_id": alert_id or f"al_{uuid.uuid4().hex[:12]}", "kind": kind,
             "customer_id": customer_id, "tenant": tenant, "score": 0.9, "threshold": 0.7,
             "reason": "Has not been back for 60 days after 4 orders.",
             "explanation": [{"feature": "days_since_last_order", "value": 60,
                              "contribution": 1.2}],
             "triggered_by": "e9", "occurred_at": "2026-03-01T10:00:00+00:00",
             "emitted_at": "2026-03-01T10:00:01+00:00", "model_version": "churn-v1"}
    entry: bytes = await redis.xadd(ALERTS_STREAM_KEY, {"alert": orjson.dumps(alert),
                                                        "tenant": tenant, "kind": kind})
    return entry


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[Api]:
    settings = Settings(redis_url=redis_url, kafka_bootstrap="127.0.0.1:1",
                        topic_prefix=f"u{uuid.uuid4().hex[:6]}.")
    redis = aioredis.Redis.from_url(redis_url)
    await redis.flushdb()
    producer = FakeProducer()
    app = create_app(settings, ApiSettings(api_rate_limit=1000, api_sse_heartbeat_s=0.2,
                                           api_broker_check_timeout_s=0.5),
                     redis=redis, producer=producer)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield Api(client=client, redis=redis, producer=producer, app=app, settings=settings)
    await redis.aclose()
