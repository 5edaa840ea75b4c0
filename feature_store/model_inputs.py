"""Profiles as the online models read them: plain dicts, timestamps in epoch milliseconds.

The API's :class:`~feature_store.reads.ProfileReader` renders profiles for people; the
worker needs the same facts cheaply for many customers at once, in one round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from feature_store.client import AsyncRedis, Pipeline
from feature_store.keys import CustomerKeys
from feature_store.replies import TOP_CATEGORIES, text

_COUNTERS = ("orders", "items_bought", "views", "product_views", "cart_adds", "cart_removes",
             "checkouts_started", "sessions", "searches", "tickets_total", "open_tickets",
             "active_days")
_TIMES = ("first_seen_at", "last_seen_at", "last_order_at")


@dataclass
class ModelInput:
    """One customer's features for the models, plus what the scorer needs around them."""

    profile: dict[str, Any]
    bought: set[str] = field(default_factory=set)
    order_totals: list[tuple[str, float]] = field(default_factory=list)  # (order_id, total)
    previous_segment: int | None = None
    marketing_consent: bool | None = None


def profile_from_fields(fields: dict[Any, Any]) -> dict[str, Any]:
    """The scalar part of a profile (counters, money, times, sentiment) from the fields of
    its hash, as Redis returns them (keys and values in bytes or text)."""
    raw = {text(key): text(value) for key, value in fields.items()}
    profile: dict[str, Any] = {name: int(raw.get(name, 0)) for name in _COUNTERS}
    revenue = int(raw.get("revenue_cents", 0)) / 100
    profile["revenue"] = revenue
    profile["avg_order_value"] = revenue / profile["orders"] if profile["orders"] else 0.0
    for name in _TIMES:
        profile[name] = int(raw[name]) if name in raw else None
    profile["sentiment"] = float(raw["sentiment"]) if "sentiment" in raw else None
    return profile


def _profile(fields: dict[Any, Any], categories: list[Any], recent: list[Any]) -> dict[str, Any]:
    profile = profile_from_fields(fields)
    total = sum(float(weight) for _, weight in categories) or 1.0
    profile["category_affinity"] = {
        text(name): float(weight) / total for name, weight in categories[:TOP_CATEGORIES]}
    profile["recent_products"] = [text(product) for product in recent]
    return profile


ModelInputs = dict[tuple[str, str], ModelInput]


async def load_model_inputs(
    redis: AsyncRedis, customers: Iterable[tuple[str, str]]
) -> ModelInputs:
    """Profiles of ``(tenant, customer_id)`` pairs that exist, in one pipelined round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        read = queue_model_inputs(pipe, customers)
        return read(await pipe.execute())


def queue_model_inputs(pipe: Pipeline, customers: Iterable[tuple[str, str]]
                       ) -> Callable[[list[Any]], ModelInputs]:
    """Queue the reads of :func:`load_model_inputs` on ``pipe`` (beside other reads of the
    same round trip); the function returned turns the pipeline's replies into the inputs."""
    wanted = list(dict.fromkeys(customers))
    start = len(pipe)
    for tenant, customer_id in wanted:
        keys = CustomerKeys(tenant, customer_id)
        pipe.hgetall(keys.profile)
        pipe.zrevrange(keys.key("categories"), 0, -1, withscores=True)
        pipe.zrevrange(keys.key("recent"), 0, -1)
        pipe.smembers(keys.key("bought"))
        pipe.zrange(keys.key("orders"), 0, -1)

    def read(replies: list[Any]) -> ModelInputs:
        return _model_inputs(wanted, replies[start:start + 5 * len(wanted)])

    return read


def _model_inputs(wanted: list[tuple[str, str]], replies: list[Any]) -> ModelInputs:
    inputs = {}
    for index, pair in enumerate(wanted):
        fields, categories, recent, bought, orders = replies[index * 5:index * 5 + 5]
        if not fields:
            continue
        raw = {text(key): text(value) for key, value in fields.items()}
        totals = []
        for member in orders:
            order_id, _, cents = text(member).rpartition("|")
            totals.append((order_id, int(cents) / 100))
        consent = raw.get("marketing_consent")
        inputs[pair] = ModelInput(
            profile=_profile(fields, categories, recent),
            bought={text(product) for product in bought},
            order_totals=totals,
            previous_segment=int(raw["segment"]) if "segment" in raw else None,
            marketing_consent=None if consent is None else consent == "1",
        )
    return inputs
