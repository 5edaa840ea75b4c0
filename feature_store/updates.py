"""What one event changes in a customer's features, as a small dict the Lua script applies.

Every change is commutative (sums, min/max, set unions, per-item max), so applying the same
events in any order gives the same features: that is what keeps event time honest under
out-of-order delivery. Category affinity uses *forward decay* (Cormode et al., 2009): a
weight is scaled by ``2 ** ((t - T0) / half_life)`` when added, and normalised when read, so a
decayed sum is still an order-independent sum.

>>> from schemas.events import decode_event
>>> event = decode_event(b'{"event_id": "e1", "customer_id": "c1", "type": "click",'
...     b' "kind": "add_to_cart", "product_id": "p1", "category": "books",'
...     b' "occurred_at": "2020-01-01T00:00:00Z"}')
>>> update = update_for(event)
>>> update["inc"], update["products"], update["categories"]
({'cart_adds': 1}, ['p1'], {'books': 3.0})
"""

from __future__ import annotations

from typing import Any

from schemas.events import ClickEvent, ClickKind, PurchaseEvent, TicketEvent

#: Forward-decay origin (2020-01-01T00:00:00Z in ms) and half-life of category affinity.
DECAY_ORIGIN_MS = 1_577_836_800_000
CATEGORY_HALF_LIFE_DAYS = 90.0

#: How much one interaction says about a customer's taste for a category.
CATEGORY_WEIGHTS = {
    ClickKind.PRODUCT_VIEW: 1.0,
    ClickKind.ADD_TO_CART: 3.0,
}
PURCHASE_CATEGORY_WEIGHT = 5.0  # per unit bought

_CLICK_COUNTERS: dict[ClickKind, tuple[str, ...]] = {
    ClickKind.PAGE_VIEW: ("views",),
    ClickKind.PRODUCT_VIEW: ("views", "product_views"),
    ClickKind.ADD_TO_CART: ("cart_adds",),
    ClickKind.REMOVE_FROM_CART: ("cart_removes",),
    ClickKind.SEARCH: ("searches",),
    ClickKind.CHECKOUT_START: ("checkouts_started",),
}


def decay_factor(at_ms: int, *, half_life_days: float = CATEGORY_HALF_LIFE_DAYS) -> float:
    """The forward-decay multiplier of an interaction at ``at_ms``."""
    return float(2.0 ** ((at_ms - DECAY_ORIGIN_MS) / (half_life_days * 86_400_000)))


def cents(amount: float) -> int:
    """Money is summed in integer cents so that any order of addition gives the same total."""
    return round(amount * 100)


def update_for(event: ClickEvent | PurchaseEvent | TicketEvent) -> dict[str, Any]:
    """The feature changes one event brings, for ``apply_event.lua``."""
    at_ms = event.occurred_at_ms
    update: dict[str, Any] = {"inc": {}}
    if event.session_id:
        update["session"] = event.session_id
    if event.marketing_consent is not None:
        update["consent"] = int(event.marketing_consent)
    if isinstance(event, ClickEvent):
        for counter in _CLICK_COUNTERS[event.kind]:
            update["inc"][counter] = 1
        if event.product_id and event.kind in (ClickKind.PRODUCT_VIEW, ClickKind.ADD_TO_CART):
            update["products"] = [event.product_id]
        weight = CATEGORY_WEIGHTS.get(event.kind)
        if weight and event.category:
            update["categories"] = {event.category: weight * decay_factor(at_ms)}
    elif isinstance(event, PurchaseEvent):
        update["inc"] = {"orders": 1, "items_bought": event.items_bought,
                         "revenue_cents": cents(event.total)}
        update["order"] = [event.order_id, cents(event.total)]
        update["products"] = [item.product_id for item in event.items]
        update["bought"] = update["products"]
        categories: dict[str, float] = {}
        factor = decay_factor(at_ms)
        for item in event.items:
            if item.category:
                categories[item.category] = (
                    categories.get(item.category, 0.0)
                    + PURCHASE_CATEGORY_WEIGHT * item.quantity * factor
                )
        if categories:
            update["categories"] = categories
    else:
        update["ticket"] = [event.ticket_id, event.status.value]
    return update
