"""Feature vectors derived from a customer profile, in event time.

Every model here sees a customer *profile* as the feature store returns it (counts, totals,
epoch-millisecond timestamps, category weights). These functions turn one profile into a flat
``dict[str, float]`` at a given event time ``now_ms`` (the watermark, never the wall clock), so
replaying old events reproduces the same vectors.

Counts and money are heavy-tailed, hence ``log1p``; recency and tenure are in days.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DAY_MS",
    "SCALAR_FIELDS",
    "behaviour_vector",
    "category_bucket",
    "churn_features",
    "days_between",
    "slim_profile",
    "to_original_units",
]

DAY_MS = 86_400_000

#: The scalar fields of a profile that the feature functions read (everything except the
#: category weights and recent products). ``slim_profile`` keeps only these, so pending
#: delayed-label snapshots stay small.
SCALAR_FIELDS = (
    "orders",
    "revenue",
    "avg_order_value",
    "items_bought",
    "views",
    "product_views",
    "cart_adds",
    "cart_removes",
    "checkouts_started",
    "sessions",
    "searches",
    "tickets_total",
    "open_tickets",
    "first_seen_at",
    "last_seen_at",
    "last_order_at",
    "sentiment",
)

Profile = Mapping[str, Any]


def days_between(earlier_ms: int | float | None, later_ms: int | float) -> float:
    """Days from ``earlier_ms`` to ``later_ms``, never negative (late events clip to 0).

    >>> days_between(0, 3 * DAY_MS)
    3.0
    >>> days_between(5 * DAY_MS, 0)
    0.0
    """
    if earlier_ms is None:
        return 0.0
    return max(0.0, (later_ms - earlier_ms) / DAY_MS)


def _num(profile: Profile, name: str) -> float:
    value = profile.get(name)
    return float(value) if value is not None else 0.0


def category_bucket(category: str, n_buckets: int) -> int:
    """A stable bucket for a category name (CRC32, unlike ``hash`` which is salted per process).

    >>> category_bucket("books", 8) == category_bucket("books", 8)
    True
    >>> 0 <= category_bucket("garden", 8) < 8
    True
    """
    return zlib.crc32(category.encode("utf-8")) % n_buckets


def slim_profile(profile: Profile) -> dict[str, Any]:
    """Keep the scalar fields of a profile only (what the feature functions need).

    >>> slim_profile({"orders": 2, "recent_products": ["p1"], "category_affinity": {"a": 1.0}})
    {'orders': 2}
    """
    return {name: profile[name] for name in SCALAR_FIELDS if name in profile}


def behaviour_vector(
    profile: Profile, now_ms: int, *, category_buckets: int = 8
) -> dict[str, float]:
    """The behaviour vector used for segmentation.

    Parameters
    ----------
    profile
        A customer profile (see the module docstring).
    now_ms
        Event time in epoch milliseconds at which recency and tenure are measured.
    category_buckets
        Category weights are folded into this many stable hash buckets (``cat_0`` ...), so the
        vector has a fixed length whatever the catalogue.

    Examples
    --------
    >>> profile = {"orders": 3, "revenue": 150.0, "avg_order_value": 50.0, "views": 20,
    ...            "sessions": 4, "cart_adds": 5, "first_seen_at": 0, "last_seen_at": 9 * DAY_MS,
    ...            "category_affinity": {"books": 1.0}}
    >>> vector = behaviour_vector(profile, now_ms=10 * DAY_MS, category_buckets=2)
    >>> round(vector["log_orders"], 3), round(math.expm1(vector["log_recency_days"]), 3)
    (1.386, 1.0)
    >>> sum(v for k, v in vector.items() if k.startswith("cat_"))
    1.0
    """
    views = _num(profile, "views") + _num(profile, "product_views")
    vector = {
        "log_revenue": math.log1p(max(_num(profile, "revenue"), 0.0)),
        "log_orders": math.log1p(_num(profile, "orders")),
        "log_avg_order_value": math.log1p(max(_num(profile, "avg_order_value"), 0.0)),
        "log_recency_days": math.log1p(days_between(profile.get("last_seen_at"), now_ms)),
        "log_tenure_days": math.log1p(days_between(profile.get("first_seen_at"), now_ms)),
        "log_views": math.log1p(views),
        "log_sessions": math.log1p(_num(profile, "sessions")),
        "log_cart_adds": math.log1p(_num(profile, "cart_adds")),
        "log_tickets": math.log1p(_num(profile, "tickets_total")),
        "sentiment": _num(profile, "sentiment"),
    }
    buckets = [0.0] * category_buckets
    for category, weight in (profile.get("category_affinity") or {}).items():
        buckets[category_bucket(category, category_buckets)] += float(weight)
    for i, weight in enumerate(buckets):
        vector[f"cat_{i}"] = weight
    return vector


def to_original_units(name: str, value: float) -> tuple[str, float]:
    """Map a behaviour-vector feature back to its natural unit (undo ``log1p``).

    >>> to_original_units("log_orders", math.log1p(4.0))
    ('orders', 4.0)
    >>> to_original_units("sentiment", -0.5)
    ('sentiment', -0.5)
    """
    if name.startswith("log_"):
        return name[4:], round(math.expm1(value), 10)
    return name, value


def churn_features(profile: Profile, now_ms: int) -> dict[str, float]:
    """The churn (and CLV) feature vector: recency, frequency, monetary value and engagement.

    Besides the raw RFM quantities it carries the two shapes a linear model cannot build by
    itself: recency relative to the customer's own typical gap between orders (a regular
    buyer silent for 3 gaps is more worrying than a yearly buyer silent for a month) and the
    order rate over tenure.

    Examples
    --------
    >>> profile = {"orders": 4, "revenue": 200.0, "avg_order_value": 50.0,
    ...            "first_seen_at": 0, "last_seen_at": 30 * DAY_MS, "last_order_at": 30 * DAY_MS}
    >>> features = churn_features(profile, now_ms=40 * DAY_MS)
    >>> features["recency_days"], features["gap_days"], round(features["recency_over_gap"], 3)
    (10.0, 10.0, 1.0)
    >>> features["one_time_buyer"]
    0.0
    """
    orders = _num(profile, "orders")
    tenure = days_between(profile.get("first_seen_at"), now_ms)
    recency = days_between(profile.get("last_seen_at"), now_ms)
    last_order = profile.get("last_order_at")
    order_recency = days_between(last_order, now_ms) if last_order is not None else tenure
    first_seen = profile.get("first_seen_at")
    # Mean gap between orders over the span that produced them (BG/NBD's t_x / (x - 1)); a
    # single order has no gap, so fall back to the tenure.
    span = days_between(first_seen, last_order) if last_order is not None else 0.0
    gap = span / (orders - 1) if orders > 1 and span > 0 else max(tenure, 1.0)
    views = _num(profile, "views") + _num(profile, "product_views")
    return {
        "log_orders": math.log1p(orders),
        "log_revenue": math.log1p(max(_num(profile, "revenue"), 0.0)),
        "log_avg_order_value": math.log1p(max(_num(profile, "avg_order_value"), 0.0)),
        "recency_days": recency,
        "log_recency_days": math.log1p(recency),
        "order_recency_days": order_recency,
        "log_tenure_days": math.log1p(tenure),
        "gap_days": gap,
        "recency_over_gap": min(order_recency / max(gap, 1.0), 20.0),
        "orders_per_month": min(30.0 * orders / max(tenure, 30.0), 30.0),
        "one_time_buyer": 1.0 if orders <= 1 else 0.0,
        "log_views": math.log1p(views),
        "log_sessions": math.log1p(_num(profile, "sessions")),
        "log_cart_adds": math.log1p(_num(profile, "cart_adds")),
        "open_tickets": _num(profile, "open_tickets"),
        "sentiment": _num(profile, "sentiment"),
    }
