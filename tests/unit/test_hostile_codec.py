"""Hostile bytes on an input topic: the codec answers an event or a problem, never raises.

A fixed corpus (``load_tests/hostile.py``: random bytes, invalid UTF-8, deep nesting, NaN and
infinities, a 10,000-item order, a 1 MB string, control characters and path tricks in ids,
timestamps far ahead or behind, amounts beyond 64-bit cents, unknown tenants) must get its
exact error code and field; generated input (hypothesis) must never raise, and whatever is
accepted must be within the contract's bounds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from load_tests.hostile import hostile_corpus
from schemas.events import EARLIEST, MAX_AMOUNT, MAX_FUTURE_SKEW, PurchaseEvent
from schemas.problems import ErrorCode, Problem
from stream.codec import dead_letter_for, decode

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CORPUS = hostile_corpus(now=NOW)
CONTROL = "".join(map(chr, [*range(0x20), 0x7F]))


@pytest.mark.parametrize("item", CORPUS, ids=[item.name for item in CORPUS])
def test_every_hostile_payload_gets_its_code_and_field(item: Any) -> None:
    """Verify that each payload of the corpus is the problem it must be, naming its field,
    or a valid event; and that its dead letter serialises."""
    decoded = decode(item.payload, now=NOW)
    if item.code is None:
        assert not isinstance(decoded, Problem), decoded
        return
    assert isinstance(decoded, Problem)
    assert decoded.code.value == item.code, decoded
    if item.field:
        assert decoded.field == item.field and decoded.message.startswith(item.field)
    letter = dead_letter_for(data=item.payload, problem=decoded, topic="t", partition=0,
                             offset=1, seen_at=NOW)
    orjson.dumps(letter.model_dump(mode="json"))


def _accepted_within_bounds(decoded: Any) -> None:
    """What the codec accepts is within the contract: no control characters in ids, event
    time between 1970 and a day ahead, amounts summable in 64-bit cents."""
    if isinstance(decoded, Problem):
        assert decoded.code in ErrorCode and decoded.message
        return
    for name in ("event_id", "customer_id", "anonymous_id", "session_id"):
        value = getattr(decoded, name)
        assert value is None or not set(value) & set(CONTROL), (name, value)
    assert EARLIEST <= decoded.occurred_at <= NOW + MAX_FUTURE_SKEW
    if isinstance(decoded, PurchaseEvent):
        assert decoded.total <= MAX_AMOUNT
        assert all(item.unit_price <= MAX_AMOUNT for item in decoded.items)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(data: bytes) -> None:
    """Verify that any bytes decode to an event or a problem with a code."""
    decoded = decode(data, now=NOW)
    _accepted_within_bounds(decoded)
    if isinstance(decoded, Problem):
        dead_letter_for(data=data, problem=decoded, topic="t", partition=0, offset=0,
                        seen_at=NOW)


json_leaves = (st.none() | st.booleans() | st.integers() | st.floats()
               | st.text(max_size=50) | st.sampled_from(["", "\x00", "../..", "NaN", "-1"]))
json_values = st.recursive(json_leaves, lambda children: st.lists(children, max_size=5)
                           | st.dictionaries(st.text(max_size=10), children, max_size=5),
                           max_leaves=20)


def mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]
           ) -> st.SearchStrategy[Any]:
    """``valid`` four times in five, else ``hostile``: most events get far enough into
    validation for each hostile field to be the one that matters."""
    return st.integers(0, 4).flatmap(lambda n: hostile if n == 0 else valid)


ids = mostly(st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40),
             st.text(max_size=300) | st.sampled_from(
                 ["", "c\x00", "a\nb", "../../etc/passwd", "%2e%2e%2f", "x}:profile", "{crm}",
                  "\u202e", "x" * 201]))
zones = [UTC, *(timezone(timedelta(hours=hours)) for hours in (-14, -1, 5, 14))]
times = mostly(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2026, 5, 30),
                 timezones=st.sampled_from(zones)).map(lambda moment: moment.isoformat()),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=st.sampled_from(zones)).map(lambda moment: moment.isoformat())
    | json_values)
prices = mostly(st.floats(0, 10_000).map(lambda price: round(price, 2)),
                st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**20, 10**20))


@st.composite
def hostile_events(draw: st.DrawFn) -> dict[str, Any]:
    """An event of any type whose every field may be hostile or missing, with extra fields."""
    kind = draw(mostly(st.sampled_from(["click", "purchase", "ticket"]),
                       st.sampled_from(["refund", "", "CLICK"])))
    event: dict[str, Any] = {
        "event_id": draw(ids), "customer_id": draw(mostly(ids, st.none())),
        "anonymous_id": draw(st.none() | ids), "type": kind,
        "tenant": draw(mostly(st.sampled_from(["default", "nobody-knows-me"]),
                              st.sampled_from(["../x", "", "a b"]))),
        "occurred_at": draw(times),
    }
    if kind == "click":
        event |= {"kind": draw(mostly(st.sampled_from(["add_to_cart", "page_view"]),
                                      st.just("x"))),
                  "product_id": draw(ids)}
    elif kind == "purchase":
        items = draw(st.lists(st.fixed_dictionaries({
            "product_id": ids, "quantity": mostly(st.integers(1, 100), st.integers(-5, 10**7)),
            "unit_price": prices}), max_size=8))
        exact = sum(item["quantity"] * item["unit_price"] for item in items
                    if isinstance(item["unit_price"], float) and item["unit_price"] < 1e300)
        event |= {"order_id": draw(ids), "items": items, "currency": "EUR",
                  "total": draw(mostly(st.just(round(exact, 2)), prices))}
    elif kind == "ticket":
        event |= {"ticket_id": draw(ids), "status": "resolved",
                  "csat": draw(mostly(st.integers(1, 5), st.integers(-3, 9))),
                  "body": draw(st.text(max_size=300))}
    event |= draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
    return {name: value for name, value in event.items()
            if value is not None or draw(st.booleans())}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_events())
def test_hostile_events_are_refused_or_within_bounds(event: dict[str, Any]) -> None:
    """Verify that events with hostile fields never make the codec raise, and that what it
    accepts is within the contract's bounds."""
    try:
        payload = orjson.dumps(event)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: send it as text
        payload = str(event).encode()
    _accepted_within_bounds(decode(payload, now=NOW))
