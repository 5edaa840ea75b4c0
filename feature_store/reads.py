"""The feature store's read side, for the API: one customer's profile and ranked lists."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from feature_store.keys import CustomerKeys, customers_key, ranking_key
from feature_store.store import text
from schemas.profile import (
    CategoryWeight,
    CustomerFeatures,
    CustomerProfile,
    CustomerScores,
    Recommendation,
)
from schemas.records import Contribution

_INT_FEATURES = ("orders", "items_bought", "views", "product_views", "cart_adds", "cart_removes",
                 "checkouts_started", "sessions", "searches", "tickets_total", "open_tickets")
_TIME_FEATURES = ("first_seen_at", "last_seen_at", "last_order_at")
TOP_CATEGORIES = 5


def from_ms(value: bytes | str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def _float(value: bytes | None) -> float | None:
    return float(value) if value is not None else None


def profile_from_raw(
    tenant: str,
    customer_id: str,
    fields: dict[bytes, bytes],
    categories: list[tuple[bytes, float]],
    recent: list[bytes],
) -> CustomerProfile:
    """Decode the raw Redis values of one customer into the public profile."""
    text = {k.decode(): v for k, v in fields.items()}
    counts = {name: int(text.get(name, 0)) for name in _INT_FEATURES}
    revenue = int(text.get("revenue_cents", 0)) / 100
    total_weight = sum(weight for _, weight in categories) or 1.0
    features = CustomerFeatures(
        **counts,
        revenue=revenue,
        avg_order_value=round(revenue / counts["orders"], 2) if counts["orders"] else 0.0,
        **{name: from_ms(text.get(name)) for name in _TIME_FEATURES},
        category_affinity=[
            CategoryWeight(category=name.decode(), weight=round(weight / total_weight, 4))
            for name, weight in categories[:TOP_CATEGORIES]
        ],
        recent_products=[product.decode() for product in recent],
    )
    segment = text.get("segment")
    scores = CustomerScores(
        churn_probability=_float(text.get("churn_probability")),
        segment=int(segment) if segment is not None else None,
        segment_label=text["segment_label"].decode() if "segment_label" in text else None,
        clv=_float(text.get("clv")),
        sentiment=_float(text.get("sentiment")),
        anomaly_score=_float(text.get("anomaly_score")),
    )
    explanation = text.get("churn_explanation")
    return CustomerProfile(
        customer_id=customer_id,
        tenant=tenant,
        features=features,
        scores=scores,
        churn_explanation=[Contribution(**item) for item in orjson.loads(explanation)]
        if explanation else [],
        model_version=text["model_version"].decode() if "model_version" in text else None,
        updated_at=from_ms(text.get("updated_at")),
    )


class ProfileReader:
    """Reads for the API; a handful of commands per request in one round trip."""

    def __init__(self, *, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def profile(self, tenant: str, customer_id: str) -> CustomerProfile | None:
        keys = CustomerKeys(tenant, customer_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.profile)
            pipe.zrevrange(keys.key("categories"), 0, TOP_CATEGORIES - 1, withscores=True)
            pipe.zrange(keys.key("categories"), 0, -1, withscores=True)
            pipe.zrevrange(keys.key("recent"), 0, -1)
            fields, top, every, recent = await pipe.execute()
        if not fields:
            return None
        total = sum(weight for _, weight in every) or 1.0
        profile = profile_from_raw(tenant, customer_id, fields, top, recent)
        # Shares are of the whole decayed interest, not only of the top categories.
        for item, (_, weight) in zip(profile.features.category_affinity, top, strict=True):
            item.weight = round(weight / total, 4)
        return profile

    async def recommendations(self, tenant: str, customer_id: str) -> list[Recommendation] | None:
        raw = await self.redis.get(CustomerKeys(tenant, customer_id).recos)
        if raw is None:
            return None
        return [Recommendation(**item) for item in orjson.loads(raw)]

    async def ranked(self, tenant: str, score: str, limit: int) -> list[tuple[str, float]]:
        """Customers with the highest ``score`` first (e.g. churn probability)."""
        rows: list[Any] = await self.redis.zrevrange(ranking_key(tenant, score), 0, limit - 1,
                                                     withscores=True)
        return [(text(member), float(value)) for member, value in rows]

    async def customer_ids(self, tenant: str, limit: int | None = None) -> list[str]:
        """Customers of a tenant, most recently active first."""
        end = -1 if limit is None else limit - 1
        members: list[Any] = await self.redis.zrevrange(customers_key(tenant), 0, end)
        return [text(member) for member in members]

    async def customer_count(self, tenant: str) -> int:
        return int(await self.redis.zcard(customers_key(tenant)))
