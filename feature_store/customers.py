"""Customers as the models and the alert rules read them: plain values, times in epoch ms.

The API's :class:`~feature_store.reads.ProfileReader` renders profiles for people; the worker
needs the same facts cheaply for many customers at once. ``apply_customer.lua`` answers them
for each customer a batch updates, in the round trip that applies the batch
(:meth:`feature_store.store.FeatureStore.apply`); :func:`load_customers` reads them alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson

from feature_store.client import AsyncRedis, PipelineScript, execute_pipeline
from feature_store.keys import CustomerKeys
from feature_store.replies import TOP_CATEGORIES, text
from feature_store.rule_state import CustomerAlertState

__all__ = ["APPLY_SCRIPT", "CUSTOMER_SCRIPT_KEYS", "Customer", "CustomerKey", "customer_from",
           "load_customers", "lua_source", "profile_from_fields"]

#: (tenant, profile id): a customer, or an anonymous visitor (``anon:...``).
CustomerKey = tuple[str, str]

_COUNTERS = ("orders", "items_bought", "views", "product_views", "cart_adds", "cart_removes",
             "checkouts_started", "sessions", "searches", "tickets_total", "open_tickets",
             "active_days")
_TIMES = ("first_seen_at", "last_seen_at", "last_order_at")
#: The profile fields a customer is read with, in the order ``apply_customer.lua`` answers
#: them: the features the models read, and the scores and consent a batch compares with.
#: Not the whole hash: its score fields (the churn explanation, statuses, labels) are a
#: third of its fields and most of its bytes, and the worker only writes them.
READ_FIELDS = (*_COUNTERS, "revenue_cents", *_TIMES, "sentiment", "segment", "clv",
               "marketing_consent")

#: The per-customer keys ``apply_customer.lua`` takes, in its order.
CUSTOMER_SCRIPT_KEYS = ("profile", "events", "sessions", "categories", "recent", "tickets",
                        "bought", "orders", "days", "merged", "erased", "alerts", "alias")


def lua_source(name: str) -> str:
    """A Lua script of ``feature_store/lua`` with the shared helpers of ``common.lua`` in
    front of it, and :data:`READ_FIELDS` as ``READ_FIELDS`` (one list for both languages)."""
    lua = resources.files("feature_store").joinpath("lua")
    fields = "local READ_FIELDS = {" + ", ".join(f"'{name}'" for name in READ_FIELDS) + "}\n"
    return fields + lua.joinpath("common.lua").read_text() + lua.joinpath(name).read_text()


APPLY_SCRIPT = PipelineScript(lua_source("apply_customer.lua"))


@dataclass
class Customer:
    """One customer as a batch left them.

    ``profile`` holds the features the models read (counters, money, times in epoch ms,
    sentiment, category affinity, recent products); ``previous_segment`` and
    ``previous_clv`` the scores stored before this batch; ``rule_state`` what the alert
    rules remember.
    """

    profile: dict[str, Any]
    bought: set[str] = field(default_factory=set)
    order_totals: list[tuple[str, float]] = field(default_factory=list)  # (order_id, total)
    previous_segment: int | None = None
    previous_clv: float | None = None
    marketing_consent: bool | None = None
    rule_state: CustomerAlertState = field(default_factory=CustomerAlertState)


def profile_from_fields(fields: dict[Any, Any]) -> dict[str, Any]:
    """The scalar part of a profile (counters, money, times, sentiment) from the fields of
    its hash, as Redis returns them (keys and values in bytes or text).

    >>> profile = profile_from_fields({b"orders": b"2", b"revenue_cents": b"3000"})
    >>> profile["orders"], profile["avg_order_value"], profile["last_seen_at"]
    (2, 15.0, None)
    """
    return _profile_from_text({text(key): text(value) for key, value in fields.items()})


def _profile_from_text(raw: dict[str, str]) -> dict[str, Any]:
    """:func:`profile_from_fields` of fields already decoded."""
    profile: dict[str, Any] = {name: int(raw.get(name, 0)) for name in _COUNTERS}
    revenue = int(raw.get("revenue_cents", 0)) / 100
    profile["revenue"] = revenue
    profile["avg_order_value"] = revenue / profile["orders"] if profile["orders"] else 0.0
    for name in _TIMES:
        profile[name] = int(raw[name]) if name in raw else None
    profile["sentiment"] = float(raw["sentiment"]) if "sentiment" in raw else None
    return profile


def customer_from(reply: Any) -> Customer | None:
    """The customer in the second part of an ``apply_customer.lua`` reply (None: none)."""
    if not reply:
        return None
    values, categories, recent, bought, orders, rule_state = reply
    raw = {name: text(value) for name, value in zip(READ_FIELDS, values, strict=True)
           if value is not None}
    profile = _profile_from_text(raw)
    weights = [float(weight) for weight in categories[1::2]]
    total = sum(weights) or 1.0
    profile["category_affinity"] = {
        text(name): weight / total
        for name, weight in zip(categories[::2][:TOP_CATEGORIES], weights, strict=False)}
    profile["recent_products"] = [text(product) for product in recent]
    totals = []
    for member in orders:
        order_id, _, cents = text(member).rpartition("|")
        totals.append((order_id, int(cents) / 100))
    consent = raw.get("marketing_consent")
    return Customer(
        profile=profile, bought={text(product) for product in bought}, order_totals=totals,
        previous_segment=int(raw["segment"]) if "segment" in raw else None,
        previous_clv=float(raw["clv"]) if "clv" in raw else None,
        marketing_consent=None if consent is None else consent == "1",
        rule_state=CustomerAlertState.from_json(rule_state))


def queue_apply(pipe: Any, tenant: str, profile_id: str, events: list[list[Any]], *,
                limits: tuple[int, int, int], updated_at_ms: int) -> None:
    """Queue ``apply_customer.lua`` for one customer (``events`` as the script takes them;
    none: a read)."""
    keys = CustomerKeys(tenant, profile_id)
    APPLY_SCRIPT.queue(pipe, keys=[keys.key(suffix) for suffix in CUSTOMER_SCRIPT_KEYS],
                       args=[*limits, profile_id, tenant, updated_at_ms, orjson.dumps(events)])


async def load_customers(redis: AsyncRedis, customers: Iterable[CustomerKey]
                         ) -> dict[CustomerKey, Customer]:
    """The customers of ``customers`` that exist, as the models read them (one round trip)."""
    wanted = list(dict.fromkeys(customers))

    def fill(pipe: Any) -> None:
        for tenant, profile_id in wanted:
            queue_apply(pipe, tenant, profile_id, [], limits=(0, 0, 0), updated_at_ms=0)

    replies = await execute_pipeline(redis, fill, [APPLY_SCRIPT])
    found = {key: customer_from(reply[1]) for key, reply in zip(wanted, replies, strict=True)}
    return {key: customer for key, customer in found.items() if customer is not None}
