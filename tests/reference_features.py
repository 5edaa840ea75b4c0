"""An offline recomputation of every customer's features from a plain list of events.

Deliberately written apart from ``feature_store``: a straightforward fold over all events,
in event time, with none of the incremental tricks, so that tests can hold the live store
to it. Only the published constants (interaction weights, decay) are shared.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

from feature_store.updates import (
    CATEGORY_HALF_LIFE_DAYS,
    CATEGORY_WEIGHTS,
    DECAY_ORIGIN_MS,
    PURCHASE_CATEGORY_WEIGHT,
)

RECENT_PRODUCTS = 20
TOP_CATEGORIES = 5


def _ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp() * 1000)


def _decay(at_ms: int) -> float:
    return float(2.0 ** ((at_ms - DECAY_ORIGIN_MS) / (CATEGORY_HALF_LIFE_DAYS * 86_400_000)))


def profile_ids(events: list[dict[str, Any]]) -> dict[str, str]:
    """event_id -> the profile it belongs to, after identity stitching."""
    customer_of_visitor: dict[str, str] = {}
    for event in events:
        if event.get("customer_id") and event.get("anonymous_id"):
            known = customer_of_visitor.setdefault(event["anonymous_id"], event["customer_id"])
            assert known == event["customer_id"], "a visitor stitched to two customers"
    owners = {}
    for event in events:
        if event.get("customer_id"):
            owners[event["event_id"]] = event["customer_id"]
        else:
            visitor = event["anonymous_id"]
            owners[event["event_id"]] = customer_of_visitor.get(visitor, f"anon:{visitor}")
    return owners


def reference_profiles(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Features per profile id, from valid events in any order, duplicates included."""
    unique = list({event["event_id"]: event for event in events}.values())
    owners = profile_ids(unique)
    by_profile: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in unique:
        by_profile[owners[event["event_id"]]].append(event)
    return {profile: _features(profile_events) for profile, profile_events in by_profile.items()}


def _features(events: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {name: 0 for name in ("orders", "items_bought", "views", "product_views",
                                   "cart_adds", "cart_removes", "checkouts_started",
                                   "searches")}
    revenue_cents = 0
    sessions: set[str] = set()
    categories: dict[str, float] = defaultdict(float)
    product_last_seen: dict[str, int] = {}
    ticket_latest: dict[str, tuple[int, str, str]] = {}
    times = [_ms(event["occurred_at"]) for event in events]
    order_times: list[int] = []
    for event, at in zip(events, times, strict=True):
        if event.get("session_id"):
            sessions.add(event["session_id"])
        if event["type"] == "click":
            kind = event["kind"]
            counts["views"] += kind in ("page_view", "product_view")
            counts["product_views"] += kind == "product_view"
            counts["cart_adds"] += kind == "add_to_cart"
            counts["cart_removes"] += kind == "remove_from_cart"
            counts["checkouts_started"] += kind == "checkout_start"
            counts["searches"] += kind == "search"
            if kind in ("product_view", "add_to_cart"):
                if event.get("product_id"):
                    product = event["product_id"]
                    product_last_seen[product] = max(product_last_seen.get(product, at), at)
                if event.get("category"):
                    categories[event["category"]] += CATEGORY_WEIGHTS[kind] * _decay(at)
        elif event["type"] == "purchase":
            counts["orders"] += 1
            order_times.append(at)
            revenue_cents += round(event["total"] * 100)
            for item in event["items"]:
                counts["items_bought"] += item["quantity"]
                product = item["product_id"]
                product_last_seen[product] = max(product_last_seen.get(product, at), at)
                if item.get("category"):
                    categories[item["category"]] += (
                        PURCHASE_CATEGORY_WEIGHT * item["quantity"] * _decay(at))
        else:
            candidate = (at, event["event_id"], event["status"])
            current = ticket_latest.get(event["ticket_id"])
            if current is None or candidate[:2] > current[:2]:
                ticket_latest[event["ticket_id"]] = candidate
    total_weight = sum(categories.values()) or 1.0
    top = sorted(categories.items(), key=lambda item: (-item[1], item[0]))[:TOP_CATEGORIES]
    recent = sorted(product_last_seen.items(), key=lambda item: (item[1], item[0]),
                    reverse=True)[:RECENT_PRODUCTS]
    return {
        **counts,
        "revenue": revenue_cents / 100,
        "avg_order_value": round(revenue_cents / 100 / counts["orders"], 2)
        if counts["orders"] else 0.0,
        "sessions": len(sessions),
        "active_days": len({at // 86_400_000 for at in times}),
        "tickets_total": len(ticket_latest),
        "open_tickets": sum(status != "resolved" for _, _, status in ticket_latest.values()),
        "first_seen_at": min(times),
        "last_seen_at": max(times),
        "last_order_at": max(order_times) if order_times else None,
        "category_affinity": [(name, weight / total_weight) for name, weight in top],
        "recent_products": [product for product, _ in recent],
    }


def assert_same_features(live: dict[str, Any], expected: dict[str, Any], who: str) -> None:
    """Compare live features (as the API returns them) with the reference, exactly."""
    for name, value in expected.items():
        got = live[name]
        if name in ("first_seen_at", "last_seen_at", "last_order_at"):
            got = None if got is None else int(got.timestamp() * 1000)
        if name == "category_affinity":
            got_pairs = [(item["category"], item["weight"]) for item in got]
            # Equal weights may tie; compare as name -> weight with the store's 4-digit rounding.
            assert len(got_pairs) == len(value), f"{who}: {name} {got_pairs} != {value}"
            expected_weights = dict(value)
            for category, weight in got_pairs:
                assert category in expected_weights or any(
                    math.isclose(weight, w, abs_tol=1e-4) for w in expected_weights.values()
                ), f"{who}: unexpected category {category} in {got_pairs} vs {value}"
                if category in expected_weights:
                    assert math.isclose(weight, expected_weights[category], abs_tol=1e-4), (
                        f"{who}: {category} weight {weight} != {expected_weights[category]}")
            continue
        assert got == value, f"{who}: {name} is {got!r}, expected {value!r}"
