"""Hostile input: a fixed corpus of payloads the worker and the ingest API must survive.

Each :class:`Hostile` is what a broken or malicious shop could send: random bytes, invalid
UTF-8, deep nesting, NaN and infinities, a 10,000-item order, a 1 MB string, control
characters and path tricks in ids, timestamps far in the future or past, amounts beyond
what 64-bit cents can sum, unknown tenants. ``code`` is the error code the codec must give
it (a dead letter on ``crm.deadletter``, a 422 naming the field from the API), or ``None``
when it is valid and must be processed as any other event (ids are opaque: ``../`` in one is
stored as it is, under the tenant's own keys, and never reaches a file path).

>>> corpus = hostile_corpus(now=datetime(2026, 6, 1, tzinfo=UTC))
>>> len(corpus) > 30, len({item.name for item in corpus}) == len(corpus)
(True, True)
>>> sorted({item.code for item in corpus if item.code})[:3]
['invalid_field', 'invalid_json', 'invalid_utf8']
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.problems import ErrorCode
from schemas.topics import CLICKS, PURCHASES, TICKETS


@dataclass(frozen=True)
class Hostile:
    name: str
    topic: str
    payload: bytes
    #: The error code the codec must give it; ``None``: a valid event.
    code: str | None
    #: The field the error names (checked when given).
    field: str | None = None


def _click(**fields: Any) -> dict[str, Any]:
    return {"event_id": "h-click", "customer_id": "h-customer", "type": "click",
            "kind": "add_to_cart", "product_id": "p-1", "category": "books",
            "occurred_at": "2026-05-01T10:00:00Z", **fields}


def _purchase(items: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    items = items if items is not None else [
        {"product_id": "p-1", "quantity": 2, "unit_price": 5.0, "category": "books"}]
    if "total" not in fields:
        fields["total"] = round(sum(i["quantity"] * i["unit_price"] for i in items), 2)
    return {"event_id": "h-purchase", "customer_id": "h-customer", "type": "purchase",
            "order_id": "h-order", "items": items, "currency": "EUR",
            "occurred_at": "2026-05-01T10:00:00Z", **fields}


def _ticket(**fields: Any) -> dict[str, Any]:
    return {"event_id": "h-ticket", "customer_id": "h-customer", "type": "ticket",
            "ticket_id": "h-t", "status": "resolved", "csat": 1, "subject": "Broken",
            "body": "It broke.", "occurred_at": "2026-05-01T10:00:00Z", **fields}


def _raw(event: dict[str, Any], replace: dict[str, bytes]) -> bytes:
    """``event`` encoded, with ``"@@name@@"`` placeholders replaced by raw JSON text."""
    payload = orjson.dumps(event)
    for name, text in replace.items():
        payload = payload.replace(f'"@@{name}@@"'.encode(), text)
    return payload


def hostile_corpus(*, now: datetime | None = None) -> list[Hostile]:
    """Every kind of hostile payload once (deterministic but for ``now``, which dates the
    far-future and almost-future ones)."""
    now = now or datetime.now(UTC)
    rng = random.Random(24)
    deep = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
    items_10k = [{"product_id": f"p-{n}", "quantity": 1, "unit_price": 1.0}
                 for n in range(10_000)]
    compact_items = [{"product_id": "p", "quantity": 1, "unit_price": 1.0}] * 501
    invalid, valid = ErrorCode, None
    corpus = [
        Hostile("random bytes", CLICKS, rng.randbytes(64), invalid.INVALID_UTF8),
        Hostile("random printable noise", CLICKS,
                bytes(rng.randrange(32, 127) for _ in range(200)), invalid.INVALID_JSON),
        Hostile("empty", CLICKS, b"", invalid.INVALID_JSON),
        Hostile("a NUL byte", CLICKS, b"\x00", invalid.INVALID_JSON),
        Hostile("a byte-order mark", CLICKS, b"\xef\xbb\xbf" + orjson.dumps(_click()),
                invalid.INVALID_JSON),
        Hostile("invalid UTF-8 in a string", TICKETS,
                _raw(_ticket(body="@@b@@"), {"b": b'"caf\xe9"'}), invalid.INVALID_UTF8),
        Hostile("a lone surrogate escape", TICKETS,
                _raw(_ticket(body="@@b@@"), {"b": b'"\\ud800"'}), invalid.INVALID_JSON),
        Hostile("deep nesting", CLICKS, deep, invalid.INVALID_JSON),
        Hostile("deep nesting in an unknown field", CLICKS,
                _raw(_click(extra="@@x@@"), {"x": b"[" * 5_000 + b"]" * 5_000}),
                invalid.INVALID_JSON),
        Hostile("NaN price", PURCHASES,
                _raw(_purchase([{"product_id": "p", "quantity": 1, "unit_price": "@@n@@"}],
                               total="@@n@@"), {"n": b"NaN"}), invalid.INVALID_FIELD,
                "items.0.unit_price"),
        Hostile("Infinity total", PURCHASES, _raw(_purchase(total="@@n@@"), {"n": b"Infinity"}),
                invalid.INVALID_FIELD, "total"),
        Hostile("1e400 total", PURCHASES, _raw(_purchase(total="@@n@@"), {"n": b"1e400"}),
                invalid.INVALID_FIELD, "total"),
        Hostile("an amount beyond what cents can sum", PURCHASES, orjson.dumps(_purchase(
            [{"product_id": "p", "quantity": 1, "unit_price": 1e16}])), invalid.INVALID_FIELD,
            "items.0.unit_price"),
        Hostile("an integer beyond 64 bits", CLICKS,
                _raw(_click(schema_version="@@n@@"), {"n": b"1" + b"0" * 30}),
                invalid.INVALID_FIELD, "schema_version"),
        Hostile("NaN in an unknown field", CLICKS, _raw(_click(score="@@n@@"), {"n": b"NaN"}),
                valid),
        Hostile("a 10,000-item order", PURCHASES, orjson.dumps(_purchase(items_10k)),
                invalid.PAYLOAD_TOO_LARGE),
        Hostile("501 items within the size limit", PURCHASES,
                orjson.dumps(_purchase(compact_items)), invalid.INVALID_FIELD, "items"),
        Hostile("a 1 MB string", CLICKS, orjson.dumps(_click(query="x" * 1_000_000)),
                invalid.PAYLOAD_TOO_LARGE),
        Hostile("a too long id", CLICKS, orjson.dumps(_click(customer_id="c" * 201)),
                invalid.INVALID_FIELD, "customer_id"),
        Hostile("a NUL in an id", CLICKS, orjson.dumps(_click(customer_id="c\x00")),
                invalid.INVALID_FIELD, "customer_id"),
        Hostile("a line break in an id", CLICKS,
                orjson.dumps(_click(event_id="e\nFAKE LOG LINE")), invalid.INVALID_FIELD,
                "event_id"),
        Hostile("an escape sequence in an id", CLICKS,
                orjson.dumps(_click(anonymous_id="\x1b[31mred")), invalid.INVALID_FIELD,
                "anonymous_id"),
        Hostile("a DEL in a product id", CLICKS, orjson.dumps(_click(product_id="p\x7f")),
                invalid.INVALID_FIELD, "product_id"),
        Hostile("a path in the customer id", CLICKS,
                orjson.dumps(_click(event_id="h-path", customer_id="../../etc/passwd")), valid),
        Hostile("an encoded path in the customer id", CLICKS,
                orjson.dumps(_click(event_id="h-encoded", customer_id="..%2F..%2Fadmin")),
                valid),
        Hostile("a Redis key in the customer id", CLICKS, orjson.dumps(_click(
            event_id="h-key", customer_id="x}:profile", product_id="crm:{default/x}:events")),
            valid),
        Hostile("a path in the tenant", CLICKS, orjson.dumps(_click(tenant="../default")),
            invalid.INVALID_FIELD, "tenant"),
        Hostile("a tenant nobody registered", CLICKS,
                orjson.dumps(_click(event_id="h-tenant", tenant="nobody-knows-me")), valid),
        Hostile("year 9999", CLICKS, orjson.dumps(_click(occurred_at="9999-12-31T23:59:59Z")),
                invalid.TIMESTAMP_IN_FUTURE, "occurred_at"),
        Hostile("two days ahead", CLICKS, orjson.dumps(_click(
            occurred_at=(now + timedelta(days=2)).isoformat())), invalid.TIMESTAMP_IN_FUTURE,
            "occurred_at"),
        Hostile("23 hours ahead", CLICKS, orjson.dumps(_click(
            event_id="h-ahead", occurred_at=(now + timedelta(hours=23)).isoformat())), valid),
        Hostile("year 1 at +14:00", TICKETS,
                orjson.dumps(_ticket(occurred_at="0001-01-01T00:00:00+14:00")),
                invalid.INVALID_FIELD, "occurred_at"),
        Hostile("1900", CLICKS, orjson.dumps(_click(occurred_at="1900-01-01T00:00:00Z")),
                invalid.INVALID_FIELD, "occurred_at"),
        Hostile("the first instant of 1970", TICKETS,
                orjson.dumps(_ticket(event_id="h-1970", occurred_at="1970-01-01T00:00:00Z")),
                valid),
        Hostile("a timestamp as a huge number", CLICKS, orjson.dumps(_click(occurred_at=1e20)),
                invalid.INVALID_FIELD, "occurred_at"),
        Hostile("a timestamp without offset", CLICKS,
                orjson.dumps(_click(occurred_at="2026-05-01T10:00:00")),
                invalid.TIMESTAMP_WITHOUT_OFFSET, "occurred_at"),
        Hostile("a JSON list", CLICKS, orjson.dumps([_click()]), invalid.NOT_AN_OBJECT),
        Hostile("an unknown type", CLICKS, orjson.dumps(_click(type="__proto__")),
                invalid.UNKNOWN_TYPE, "type"),
    ]
    return [Hostile(item.name, item.topic, item.payload,
                    item.code.value if isinstance(item.code, ErrorCode) else item.code,
                    item.field) for item in corpus]


def hostile_stream(count: int, *, seed: int = 0, now: datetime | None = None
                   ) -> Iterator[tuple[str, str, bytes]]:
    """``count`` messages (topic, key, payload) cycling through the corpus, with each
    valid one under fresh ids (a new customer of a new tenant every 50th time), so that a
    worker keeps applying them rather than skipping repeats."""
    corpus = hostile_corpus(now=now)
    rng = random.Random(seed)
    for number in range(count):
        item = corpus[number % len(corpus)]
        if item.code is not None:
            yield item.topic, f"h-{rng.randrange(1000)}", item.payload
            continue
        event = json.loads(item.payload)  # Python's parser: valid ones may hold NaN
        event["event_id"] = f"{event['event_id']}-{number}"
        event["customer_id"] = f"{event['customer_id']}-{number % 5000}"
        if number % 50 == 0:
            event["tenant"] = f"t{number}"
        yield item.topic, event["customer_id"], json.dumps(event).encode()
