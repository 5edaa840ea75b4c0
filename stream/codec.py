"""Bytes from a topic → a typed event, or a :class:`~schemas.problems.Problem` saying why not.

The codec never raises on bad input: every failure becomes a problem with a machine code,
which the agent turns into a dead letter and moves on.

>>> decode(b'{"event_id": "e1", "customer_id": "c1", "type": "click", "kind": "search",'
...        b' "occurred_at": "2026-01-01T10:00:00+01:00"}').kind.value
'search'
>>> decode(b'\\xff\\xfe').code.value
'invalid_utf8'
>>> decode(b'[1, 2]').code.value
'not_an_object'
"""

from __future__ import annotations

import base64
from datetime import datetime

from pydantic import ValidationError

from schemas.events import EVENT_ADAPTER, AnyEvent
from schemas.problems import ErrorCode, Problem, problem_from_validation_error
from schemas.records import DEAD_LETTER_PAYLOAD_BYTES, DeadLetter, dead_letter_id_for

DEFAULT_MAX_EVENT_BYTES = 64 * 1024


def decode(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES, now: datetime | None = None
) -> AnyEvent | Problem:
    """Validate one message value; never raises for bad input."""
    if len(data) > max_bytes:
        return Problem(
            code=ErrorCode.PAYLOAD_TOO_LARGE,
            message=f"payload of {len(data)} bytes exceeds the limit of {max_bytes} bytes",
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return Problem(
            code=ErrorCode.INVALID_UTF8,
            message=f"payload is not valid UTF-8 (byte {error.start})",
        )
    stripped = data.lstrip()
    if stripped[:1] not in (b"{", b""):
        # Valid JSON that is not an object (a list, a string, a number) vs. not JSON at all.
        try:
            EVENT_ADAPTER.validate_json(data)
        except ValidationError as error:
            problem = problem_from_validation_error(error)
            if problem.code is ErrorCode.INVALID_JSON:
                return problem
        return Problem(code=ErrorCode.NOT_AN_OBJECT, message="event must be a JSON object")
    try:
        return EVENT_ADAPTER.validate_json(data, context={"now": now} if now else None)
    except ValidationError as error:
        return problem_from_validation_error(error)


def _utf8_prefix(data: bytes) -> bytes:
    """``data`` without a UTF-8 character cut in two at its end (when the rest is UTF-8).

    >>> _utf8_prefix("aé".encode()[:2]), _utf8_prefix(bytes([255, 254]))
    (b'a', b'\\xff\\xfe')
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.reason == "unexpected end of data" and error.end == len(data):
            return data[:error.start]
    return data


def dead_letter_for(
    *, data: bytes, problem: Problem, topic: str, partition: int, offset: int, seen_at: datetime
) -> DeadLetter:
    """The dead-letter record for one message: original payload (its first
    ``DEAD_LETTER_PAYLOAD_BYTES``), source, reason, time."""
    size = len(data)
    truncated = size > DEAD_LETTER_PAYLOAD_BYTES
    if truncated:
        data = _utf8_prefix(data[:DEAD_LETTER_PAYLOAD_BYTES])
    try:
        text: str | None = data.decode("utf-8")
        encoded = None
    except UnicodeDecodeError:
        text, encoded = None, base64.b64encode(data).decode("ascii")
    return DeadLetter(
        dead_letter_id=dead_letter_id_for(topic, partition, offset),
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        payload_text=text,
        payload_base64=encoded,
        payload_bytes=size,
        payload_truncated=truncated,
        error_code=problem.code,
        error=problem.message,
        field=problem.field,
        seen_at=seen_at,
    )
