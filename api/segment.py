"""Segment / RudderStack tracking calls mapped onto our events.

``track`` calls of the e-commerce spec become clicks or purchases, ``identify`` becomes a
page view carrying both ``userId`` and ``anonymousId`` (which stitches the visitor to the
customer), ``page`` a page view. Anything else is rejected with a reason.

>>> mapped = to_event({"type": "track", "event": "Product Viewed", "userId": "u1",
...                    "messageId": "m1", "timestamp": "2026-01-01T10:00:00Z",
...                    "properties": {"product_id": "p1", "category": "books"}}, sent_at=None)
>>> mapped["type"], mapped["kind"], mapped["product_id"], mapped["customer_id"]
('click', 'product_view', 'p1', 'u1')
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Segment e-commerce event names and the click kind each becomes.
CLICK_KINDS = {
    "Product Viewed": "product_view",
    "Product Added": "add_to_cart",
    "Product Removed": "remove_from_cart",
    "Products Searched": "search",
    "Checkout Started": "checkout_start",
}
PURCHASE_EVENTS = frozenset({"Order Completed"})
DEFAULT_CURRENCY = "USD"


class UnmappableCall(ValueError):
    """A call we cannot turn into an event; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _envelope(call: dict[str, Any], sent_at: str | None) -> dict[str, Any]:
    context = _object(call.get("context"))
    properties = _object(call.get("properties"))
    occurred_at = call.get("timestamp") or call.get("originalTimestamp") or sent_at
    if not occurred_at:
        raise UnmappableCall("timestamp", "timestamp: required (or originalTimestamp, sentAt)")
    # Without a messageId, the same call always gets the same id, so a resend is a duplicate.
    event_id = _text(call.get("messageId")) or "seg_" + hashlib.blake2b(
        json.dumps(call, sort_keys=True, default=str).encode(), digest_size=12).hexdigest()
    envelope = {
        "event_id": event_id,
        "customer_id": _text(call.get("userId")),
        "anonymous_id": _text(call.get("anonymousId")),
        "session_id": _text(context.get("sessionId") or properties.get("session_id")),
        "occurred_at": occurred_at,
    }
    return {name: value for name, value in envelope.items() if value is not None}


def _products(properties: dict[str, Any]) -> list[dict[str, Any]]:
    products = properties.get("products")
    items = products if isinstance(products, list) else [properties]
    lines = []
    for product in items:
        if not isinstance(product, dict):
            raise UnmappableCall("properties.products", "properties.products: objects expected")
        lines.append({
            "product_id": _text(product.get("product_id") or product.get("sku")
                                or product.get("id")),
            "quantity": product.get("quantity", 1),
            "unit_price": product.get("price"),
            "category": _text(product.get("category")),
        })
    return lines


def _purchase(properties: dict[str, Any]) -> dict[str, Any]:
    items = _products(properties)
    try:
        # Our total is what the items cost; Segment's adds shipping and tax.
        total = round(sum(float(i["quantity"]) * float(i["unit_price"]) for i in items), 2)
    except (TypeError, ValueError) as error:
        raise UnmappableCall("properties.products",
                             "properties.products: each needs a numeric price and quantity"
                             ) from error
    purchase = {"type": "purchase", "order_id": _text(properties.get("order_id")),
                "items": items, "total": total,
                "currency": str(properties.get("currency") or DEFAULT_CURRENCY).upper()}
    return {key: value for key, value in purchase.items() if value is not None}


def to_event(call: Any, *, sent_at: str | None) -> dict[str, Any]:
    """One tracking call as an event object (not validated yet); raises UnmappableCall."""
    if not isinstance(call, dict):
        raise UnmappableCall("type", "a call is a JSON object")
    kind = call.get("type")
    properties = _object(call.get("properties"))
    envelope = _envelope(call, sent_at)
    if kind == "identify":
        if "customer_id" not in envelope:
            raise UnmappableCall("userId", "userId: identify needs the user's id")
        return {**envelope, "type": "click", "kind": "page_view"}
    if kind == "page":
        return {**envelope, "type": "click", "kind": "page_view",
                **({"url": str(properties["url"])} if properties.get("url") else {})}
    if kind != "track":
        raise UnmappableCall("type", f"type: {kind!r} calls are not mapped "
                                     "(track, identify and page are)")
    name = call.get("event")
    if name in PURCHASE_EVENTS:
        return {**envelope, **_purchase(properties)}
    if name not in CLICK_KINDS:
        raise UnmappableCall("event", f"event: {name!r} is not mapped; known: "
                                      + ", ".join([*CLICK_KINDS, *PURCHASE_EVENTS]))
    click = {**envelope, "type": "click", "kind": CLICK_KINDS[name],
             "product_id": _text(properties.get("product_id") or properties.get("sku")),
             "category": _text(properties.get("category")),
             "query": _text(properties.get("query")),
             "url": _text(properties.get("url"))}
    return {key: value for key, value in click.items() if value is not None}
