"""Chaos helpers: duplicates, late events and malformed payloads, exactly as promised."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from load_tests.chaos import (
    MALFORMED_CODES,
    MAX_EVENT_BYTES,
    inject_duplicates,
    malformed_events,
    shuffle_out_of_order,
)
from schemas.events import decode_event
from schemas.problems import ErrorCode, problem_from_validation_error
from schemas.topics import INPUT_TOPICS
from simulator import ShopSimulator

NOW = datetime(2026, 11, 1, tzinfo=UTC)
#: Codes decided before pydantic sees the payload (by the stream codec).
CODEC_ONLY = {ErrorCode.INVALID_UTF8.value, ErrorCode.PAYLOAD_TOO_LARGE.value}


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return list(ShopSimulator(customers=40, seed=2, days=30, catalogue_size=200).events())


def test_duplicates_are_exact_later_resends(events: list[dict[str, Any]]) -> None:
    """Verify that the promised fraction of events is re-sent later, byte for byte."""
    result = inject_duplicates(events, 0.05, random.Random(1))
    assert len(result) == len(events) + round(0.05 * len(events))
    seen: dict[str, bytes] = {}
    first_position: dict[str, int] = {}
    duplicates = 0
    for position, event in enumerate(result):
        payload = orjson.dumps(event)
        if event["event_id"] in seen:
            duplicates += 1
            assert payload == seen[event["event_id"]]
            assert position > first_position[event["event_id"]]
        else:
            seen[event["event_id"]] = payload
            first_position[event["event_id"]] = position
    assert duplicates == round(0.05 * len(events))
    # The originals keep their order.
    assert list(seen) == [event["event_id"] for event in events]
    assert inject_duplicates(events, 0.0, random.Random(1)) == events


def test_duplicates_are_deterministic() -> None:
    """Verify that the same rng seed duplicates the same events, and bad fractions fail."""
    items = list(range(500))
    assert inject_duplicates(items, 0.1, random.Random(4)) == inject_duplicates(
        items, 0.1, random.Random(4)
    )
    with pytest.raises(ValueError):
        inject_duplicates(items, 1.5, random.Random(4))


def test_out_of_order_delays_the_promised_fraction() -> None:
    """Verify that about the given fraction of events arrives late, by at most the limit."""
    items = list(range(10_000))
    result = shuffle_out_of_order(items, 0.1, 20, random.Random(7))
    assert sorted(result) == items
    # An event is late when some event that originally came after it now precedes it.
    late, highest = 0, -1
    for item in result:
        if item < highest:
            late += 1
        highest = max(highest, item)
    assert 0.09 * len(items) <= late <= 0.1 * len(items)
    position = {item: index for index, item in enumerate(result)}
    assert all(position[item] - item <= 20 for item in items)
    assert shuffle_out_of_order(items, 0.0, 20, random.Random(7)) == items
    with pytest.raises(ValueError):
        shuffle_out_of_order(items, 0.1, 0, random.Random(7))


def test_out_of_order_breaks_event_time(events: list[dict[str, Any]]) -> None:
    """Verify that shuffled simulator events go back in event time, and nothing is lost."""
    result = shuffle_out_of_order(events, 0.05, 50, random.Random(3))
    times = [event["occurred_at"] for event in result]
    assert times != sorted(times)
    assert sorted(e["event_id"] for e in result) == sorted(e["event_id"] for e in events)


def test_malformed_events_cover_every_code() -> None:
    """Verify that one of each malformed kind comes back, each on an input topic with a key."""
    batch = malformed_events(random.Random(1), now=NOW)
    assert [code for *_, code in batch] == list(MALFORMED_CODES)
    assert set(MALFORMED_CODES) == {code.value for code in ErrorCode}
    for topic, key, payload, _ in batch:
        assert topic in INPUT_TOPICS and key and isinstance(payload, bytes)
    too_large = [p for _, _, p, code in batch if code == "payload_too_large"]
    assert len(too_large[0]) > MAX_EVENT_BYTES
    invalid_utf8 = [p for _, _, p, code in batch if code == "invalid_utf8"]
    with pytest.raises(UnicodeDecodeError):
        invalid_utf8[0].decode("utf-8")
    assert malformed_events(random.Random(1), now=NOW) == batch


def test_malformed_codes_match_the_schema_problems() -> None:
    """Verify that pydantic-decided payloads get the expected code from the problem mapping."""
    for _, _, payload, code in malformed_events(random.Random(9), 11 * 20, now=NOW):
        if code in CODEC_ONLY:
            if code == "payload_too_large":
                decode_event(payload, now=NOW)  # valid but for its size
            continue
        with pytest.raises(ValidationError) as caught:
            decode_event(payload, now=NOW)
        assert problem_from_validation_error(caught.value).code.value == code, payload[:300]


def test_malformed_codes_match_the_codec() -> None:
    """Verify that the stream codec gives every malformed payload its expected code."""
    codec = pytest.importorskip("stream.codec")
    for _, _, payload, code in malformed_events(random.Random(10), 11 * 20, now=NOW):
        problem = codec.decode(payload, now=NOW)
        assert getattr(problem, "code", None) == ErrorCode(code), payload[:300]
