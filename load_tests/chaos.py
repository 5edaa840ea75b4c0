"""Corrupt an event stream on purpose, for robustness tests.

Pure functions, deterministic for a given ``random.Random``:

- :func:`inject_duplicates`: some events are sent again later (same object, so the same
  ``event_id`` and the same bytes), as an at-least-once shop or network would;
- :func:`shuffle_out_of_order`: some events are delayed by up to ``max_displacement``
  positions, so they arrive after later events;
- :func:`malformed_events`: raw payloads of every kind of invalid input, each with the machine
  error code (:class:`schemas.problems.ErrorCode`) the codec must give it.

>>> import random
>>> events = list(range(100))
>>> doubled = inject_duplicates(events, 0.1, random.Random(1))
>>> len(doubled), sorted(set(doubled)) == events
(110, True)
>>> late = shuffle_out_of_order(events, 0.2, 5, random.Random(1))
>>> sorted(late) == events, late != events
(True, True)
>>> sorted({code for *_, code in malformed_events(random.Random(1))}) == sorted(MALFORMED_CODES)
True
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson

from schemas.problems import ErrorCode
from schemas.topics import CLICKS, PURCHASES, TICKETS

T = TypeVar("T")

#: Every code :func:`malformed_events` produces, in the order it cycles through them.
MALFORMED_CODES: tuple[str, ...] = (
    ErrorCode.INVALID_JSON.value,
    ErrorCode.INVALID_UTF8.value,
    ErrorCode.NOT_AN_OBJECT.value,
    ErrorCode.MISSING_FIELD.value,
    ErrorCode.INVALID_FIELD.value,
    ErrorCode.UNKNOWN_TYPE.value,
    ErrorCode.NEGATIVE_AMOUNT.value,
    ErrorCode.TOTAL_MISMATCH.value,
    ErrorCode.TIMESTAMP_WITHOUT_OFFSET.value,
    ErrorCode.TIMESTAMP_IN_FUTURE.value,
    ErrorCode.PAYLOAD_TOO_LARGE.value,
)

#: The codec's default limit; :func:`malformed_events` goes past it.
MAX_EVENT_BYTES = 64 * 1024

Malformed = tuple[str, str, bytes, str]


def inject_duplicates(events: Sequence[T], fraction: float, rng: random.Random) -> list[T]:
    """``events`` plus ``round(fraction * len(events))`` re-sends of distinct events.

    Each re-sent event is the very same object, inserted at a random later position (after
    its original), so it serializes to the same bytes with the same ``event_id``.
    """
    _check_fraction(fraction)
    count = round(fraction * len(events))
    inserts: dict[int, list[T]] = {}
    for index in rng.sample(range(len(events)), count):
        # Inserted just before position ``at`` (len(events) = at the very end), after ``index``.
        at = rng.randint(index + 1, len(events))
        inserts.setdefault(at, []).append(events[index])
    result: list[T] = []
    for position, event in enumerate(events):
        result.extend(inserts.get(position, ()))
        result.append(event)
    result.extend(inserts.get(len(events), ()))
    return result


def shuffle_out_of_order(
    events: Sequence[T], fraction: float, max_displacement: int, rng: random.Random
) -> list[T]:
    """The same events with ``round(fraction * len(events))`` of them delayed.

    A delayed event moves back by 1..``max_displacement`` positions (never past the end), so
    it arrives after events that happened later: out of order in event time, as a shop with
    retries or several senders would deliver.
    """
    _check_fraction(fraction)
    if max_displacement < 1:
        raise ValueError("max_displacement must be at least 1")
    keys = [float(index) for index in range(len(events))]
    for index in rng.sample(range(len(events)), round(fraction * len(events))):
        keys[index] = index + rng.randint(1, max_displacement) + 0.5
    order = sorted(range(len(events)), key=keys.__getitem__)
    return [events[index] for index in order]


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")


def malformed_events(
    rng: random.Random, count: int = len(MALFORMED_CODES), *, now: datetime | None = None
) -> list[Malformed]:
    """``count`` invalid payloads as ``(topic, key, payload bytes, expected error code)``.

    They cycle through :data:`MALFORMED_CODES`, so any ``count >= 11`` includes every kind:
    bad JSON, invalid UTF-8, JSON that is not an object, a missing field, a mistyped field,
    an unknown type, a negative quantity or price, a total disagreeing with its items, a
    timestamp without offset, one more than a day in the future (of ``now``, default the
    wall clock) and a payload over 64 KiB. Apart from its one defect, each payload is a
    valid event.
    """
    now = now or datetime.now(UTC)
    out: list[Malformed] = []
    for number in range(count):
        code = MALFORMED_CODES[number % len(MALFORMED_CODES)]
        out.append(_MAKERS[code](rng, f"chaos-{number}", now))
    return out


def _base(rng: random.Random, event_id: str, kind: str) -> dict[str, Any]:
    customer = f"c-{rng.randrange(1_000_000):06d}"
    event: dict[str, Any] = {
        "event_id": event_id,
        "customer_id": customer,
        "session_id": f"s-{event_id}",
        "tenant": "default",
        "occurred_at": "2026-01-01T10:00:00.000Z",
        "type": kind,
    }
    if kind == "click":
        event.update(kind="product_view", product_id=f"p-{rng.randrange(2000):05d}",
                     category="books")
    elif kind == "purchase":
        price = round(rng.uniform(1, 100), 2)
        quantity = rng.randint(1, 3)
        event.update(order_id=f"o-{event_id}", currency="EUR", total=round(price * quantity, 2),
                     items=[{"product_id": "p-00001", "quantity": quantity, "unit_price": price,
                             "category": "books"}])
    else:
        event.update(ticket_id=f"t-{event_id}", status="opened", channel="email",
                     subject="Where is my order?", body="Still not delivered.")
    return event


def _out(event: dict[str, Any], payload: bytes, code: str) -> Malformed:
    topic = {"purchase": PURCHASES, "ticket": TICKETS}.get(str(event.get("type")), CLICKS)
    return topic, str(event["customer_id"]), payload, code


def _invalid_json(rng: random.Random, event_id: str, now: datetime) -> Malformed:
    event = _base(rng, event_id, rng.choice(("click", "purchase", "ticket")))
    whole = orjson.dumps(event)
    broken = rng.choice((
        whole[: rng.randrange(5, len(whole) - 1)],  # truncated
        whole.replace(b'":', b'"', 1),  # a colon missing
        whole[:-1] + b",}",  # trailing comma
    ))
    return _out(event, broken, ErrorCode.INVALID_JSON.value)


def _invalid_utf8(rng: random.Random, event_id: str, now: datetime) -> Malformed:
    event = _base(rng, event_id, "ticket")
    event["body"] = "@@BAD@@"
    bad = rng.choice((b"\xff\xfe", b"caf\xe9", b"\xc3"))  # not UTF-8 (Latin-1, a cut sequence)
    payload = orjson.dumps(event).replace(b"@@BAD@@", bad)
    return _out(event, payload, ErrorCode.INVALID_UTF8.value)


def _not_an_object(rng: random.Random, event_id: str, now: datetime) -> Malformed:
    event = _base(rng, event_id, "click")
    payload = rng.choice((orjson.dumps([event]), b'"hello"', b"42", b"null", b"true"))
    return _out(event, payload, ErrorCode.NOT_AN_OBJECT.value)


def _missing_field(rng: random.Random, event_id: str, now: datetime) -> Malformed:
    kind = rng.choice(("click", "purchase", "ticket"))
    event = _base(rng, event_id, kind)
    required = {"click": "kind", "purchase": "order_id", "ticket": "ticket_id"}[kind]
    missing = rng.choice(("event_id", "occurred_at", required))
    payload = orjson.dumps({k: v for k, v in event.items() if k != missing})
    return _out(event, payload, ErrorCode.MISSING_FIELD.value)


def _invalid_field(rng: random.Random, event_id: str, now: datetime) -> Malformed:
    event = _base(rng, event_id, "click")
    field, value = rng.choice((
        ("kind", "teleport"),
        ("session_id", 12345),
        ("product_id", ["p-1"]),
        ("schema_version", "one"),
        ("occurred_at", "yesterday"),
    ))
    event[field] = value
    return _out(event, orjson.dumps(event), ErrorCode.INVALID_FIELD.value)


def _unknown_type(rng: random.Random, event_id: str, now: datetime) -> Malformed:
    event = _base(rng, event_id, "click")
    event["type"] = rng.choice(("refund", "login", "CLICK", "wishlist"))
    return _out(event, orjson.dumps(event), ErrorCode.UNKNOWN_TYPE.value)


def _negative_amount(rng: random.Random, event_id: str, now: datetime) -> Malformed:
    event = _base(rng, event_id, "purchase")
    item = event["items"][0]
    if rng.random() < 0.5:
        item["quantity"] = -rng.randint(1, 3)
    else:
        item["unit_price"] = -round(rng.uniform(1, 100), 2)
    event["total"] = round(item["quantity"] * item["unit_price"], 2)
    return _out(event, orjson.dumps(event), ErrorCode.NEGATIVE_AMOUNT.value)


def _total_mismatch(rng: random.Random, event_id: str, now: datetime) -> Malformed:
    event = _base(rng, event_id, "purchase")
    correct, delta = event["total"], round(rng.uniform(1, 50), 2)
    event["total"] = correct - delta if correct > delta and rng.random() < 0.5 else correct + delta
    return _out(event, orjson.dumps(event), ErrorCode.TOTAL_MISMATCH.value)


def _timestamp_without_offset(rng: random.Random, event_id: str, now: datetime) -> Malformed:
    event = _base(rng, event_id, rng.choice(("click", "purchase", "ticket")))
    event["occurred_at"] = rng.choice(("2026-01-01T10:00:00", "2026-01-01T10:00:00.250"))
    return _out(event, orjson.dumps(event), ErrorCode.TIMESTAMP_WITHOUT_OFFSET.value)


def _timestamp_in_future(rng: random.Random, event_id: str, now: datetime) -> Malformed:
    event = _base(rng, event_id, rng.choice(("click", "purchase", "ticket")))
    ahead = timedelta(days=rng.uniform(2, 365))
    event["occurred_at"] = (now + ahead).isoformat()
    return _out(event, orjson.dumps(event), ErrorCode.TIMESTAMP_IN_FUTURE.value)


def _payload_too_large(rng: random.Random, event_id: str, now: datetime) -> Malformed:
    event = _base(rng, event_id, "click")
    # An unknown extra field: the event would be valid but for its size.
    event["padding"] = "x" * (MAX_EVENT_BYTES + rng.randrange(1, 8192))
    return _out(event, orjson.dumps(event), ErrorCode.PAYLOAD_TOO_LARGE.value)


_MAKERS = {
    ErrorCode.INVALID_JSON.value: _invalid_json,
    ErrorCode.INVALID_UTF8.value: _invalid_utf8,
    ErrorCode.NOT_AN_OBJECT.value: _not_an_object,
    ErrorCode.MISSING_FIELD.value: _missing_field,
    ErrorCode.INVALID_FIELD.value: _invalid_field,
    ErrorCode.UNKNOWN_TYPE.value: _unknown_type,
    ErrorCode.NEGATIVE_AMOUNT.value: _negative_amount,
    ErrorCode.TOTAL_MISMATCH.value: _total_mismatch,
    ErrorCode.TIMESTAMP_WITHOUT_OFFSET.value: _timestamp_without_offset,
    ErrorCode.TIMESTAMP_IN_FUTURE.value: _timestamp_in_future,
    ErrorCode.PAYLOAD_TOO_LARGE.value: _payload_too_large,
}
