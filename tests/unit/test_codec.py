"""The codec and the event schemas: valid events decode, every kind of bad input is named."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from schemas.events import ClickEvent, PurchaseEvent, TicketEvent
from schemas.export import export_json_schemas
from schemas.problems import ErrorCode, Problem
from stream.codec import dead_letter_for, decode

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CLICK = {"event_id": "e1", "customer_id": "c1", "type": "click", "kind": "product_view",
         "product_id": "p1", "occurred_at": "2026-05-31T10:00:00+02:00"}
PURCHASE = {"event_id": "e2", "customer_id": "c1", "type": "purchase", "order_id": "o1",
            "items": [{"product_id": "p1", "quantity": 3, "unit_price": 3.33}],
            "total": 9.99, "currency": "EUR", "occurred_at": "2026-05-31T10:00:00Z"}
TICKET = {"event_id": "e3", "customer_id": "c1", "type": "ticket", "ticket_id": "t1",
          "status": "resolved", "csat": 2, "occurred_at": "2026-05-31T10:00:00Z"}


def encode(event: dict[str, object]) -> bytes:
    return orjson.dumps(event)


def test_valid_events_of_every_type_decode() -> None:
    """Verify that a click, a purchase and a ticket decode to their typed events."""
    assert isinstance(decode(encode(CLICK), now=NOW), ClickEvent)
    assert isinstance(decode(encode(PURCHASE), now=NOW), PurchaseEvent)
    assert isinstance(decode(encode(TICKET), now=NOW), TicketEvent)


def test_envelope_defaults_and_unknown_fields() -> None:
    """Verify that tenant and schema_version default and unknown fields are ignored."""
    event = decode(encode(CLICK | {"utm_source": "newsletter"}), now=NOW)
    assert isinstance(event, ClickEvent)
    assert (event.tenant, event.schema_version) == ("default", 1)
    assert not hasattr(event, "utm_source")


def test_an_anonymous_visitor_needs_no_customer_id() -> None:
    """Verify that an event with only anonymous_id is valid and keyed by the visitor."""
    anonymous = {k: v for k, v in CLICK.items() if k != "customer_id"} | {"anonymous_id": "v7"}
    event = decode(encode(anonymous), now=NOW)
    assert isinstance(event, ClickEvent)
    assert event.partition_key == "anon:v7"


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        (b"\xff\xfe{}", ErrorCode.INVALID_UTF8, None),
        (b'{"event_id": ', ErrorCode.INVALID_JSON, None),
        (b"[1, 2, 3]", ErrorCode.NOT_AN_OBJECT, None),
        (encode({k: v for k, v in CLICK.items() if k != "event_id"}), ErrorCode.MISSING_FIELD,
         "event_id"),
        (encode({k: v for k, v in CLICK.items() if k != "customer_id"}),
         ErrorCode.MISSING_FIELD, "customer_id"),
        (encode({k: v for k, v in CLICK.items() if k != "type"}), ErrorCode.MISSING_FIELD,
         "type"),
        (encode(CLICK | {"session_id": 12}), ErrorCode.INVALID_FIELD, "session_id"),
        (encode(CLICK | {"kind": "hover"}), ErrorCode.INVALID_FIELD, "kind"),
        (encode(CLICK | {"type": "refund"}), ErrorCode.UNKNOWN_TYPE, "type"),
        (encode(PURCHASE | {"items": [{"product_id": "p", "quantity": -2, "unit_price": 1}],
                            "total": -2}), ErrorCode.NEGATIVE_AMOUNT, "items.0.quantity"),
        (encode(PURCHASE | {"items": [{"product_id": "p", "quantity": 1, "unit_price": -5}],
                            "total": 0}), ErrorCode.NEGATIVE_AMOUNT, "items.0.unit_price"),
        (encode(PURCHASE | {"total": 12.5}), ErrorCode.TOTAL_MISMATCH, "total"),
        (encode(CLICK | {"occurred_at": "2026-05-31T10:00:00"}),
         ErrorCode.TIMESTAMP_WITHOUT_OFFSET, "occurred_at"),
        (encode(CLICK | {"occurred_at": "2026-06-03T00:00:00Z"}),
         ErrorCode.TIMESTAMP_IN_FUTURE, "occurred_at"),
        (encode(TICKET | {"status": "opened"}), ErrorCode.INVALID_FIELD, "csat"),
        (encode(CLICK | {"url": "x" * 70_000}), ErrorCode.PAYLOAD_TOO_LARGE, None),
    ],
)
def test_bad_input_is_a_problem_naming_field_and_code(
    payload: bytes, code: ErrorCode, field: str | None
) -> None:
    """Verify that each kind of bad input gives its machine code, field and a message."""
    problem = decode(payload, now=NOW)
    assert isinstance(problem, Problem)
    assert problem.code is code, problem
    assert problem.field == field
    assert problem.message and (field is None or problem.message.startswith(field))


def test_rounding_within_a_cent_per_line_is_not_a_mismatch() -> None:
    """Verify that 3 x 3.33 = 9.99 against a total of 10.00 is accepted (rounding)."""
    assert isinstance(decode(encode(PURCHASE | {"total": 10.0}), now=NOW), PurchaseEvent)


def test_a_dead_letter_keeps_the_original_bytes_and_source() -> None:
    """Verify that a dead letter carries payload, source coordinates, reason and code."""
    problem = decode(b"\xff oops", now=NOW)
    assert isinstance(problem, Problem)
    letter = dead_letter_for(data=b"\xff oops", problem=problem, topic="shop.clicks",
                             partition=2, offset=41, seen_at=NOW)
    assert letter.payload_text is None and letter.payload_base64 == "/yBvb3Bz"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "shop.clicks", 2, 41)
    assert letter.error_code is ErrorCode.INVALID_UTF8
    assert letter.dead_letter_id == "dl_shop.clicks_2_41"


def test_json_schemas_are_exported_one_file_per_record(tmp_path: Path) -> None:
    """Verify that crm schemas export writes a JSON Schema per record."""
    paths = export_json_schemas(tmp_path)
    names = {path.name for path in paths}
    assert {"event.schema.json", "alert.schema.json", "dead_letter.schema.json"} <= names
    event_schema = orjson.loads((tmp_path / "event.schema.json").read_bytes())
    assert event_schema["discriminator"]["propertyName"] == "type"
