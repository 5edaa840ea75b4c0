"""Validate an ingest batch event by event: the good ones go on, each bad one says why.

>>> good = {"event_id": "e1", "customer_id": "c1", "type": "click", "kind": "page_view",
...         "occurred_at": "2026-01-01T10:00:00+00:00"}
>>> events, rejected = validate_batch([good, {**good, "tenant": "other"}, 7], tenant="shop")
>>> [e.tenant for e in events], [(r.index, r.code) for r in rejected]
(['shop'], [(1, 'tenant_mismatch'), (2, 'not_an_object')])
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.api import RejectedEvent
from schemas.events import validate_event
from schemas.problems import ErrorCode, problem_from_validation_error
from stream.producer import AnyEvent

TENANT_MISMATCH = "tenant_mismatch"


def _event_id(item: Any) -> str | None:
    value = item.get("event_id") if isinstance(item, dict) else None
    return value[:200] if isinstance(value, str) else None


def validate_one(
    index: int, item: Any, *, tenant: str, max_bytes: int, now: datetime | None = None
) -> AnyEvent | RejectedEvent:
    """One event of a batch: typed, with the caller's tenant; or why it was rejected."""
    if not isinstance(item, dict):
        return RejectedEvent(index=index, code=ErrorCode.NOT_AN_OBJECT.value,
                             reason="an event is a JSON object")
    event_id = _event_id(item)
    claimed = item.get("tenant")
    if claimed is not None and claimed != tenant:
        return RejectedEvent(index=index, event_id=event_id, field="tenant",
                             code=TENANT_MISMATCH,
                             reason=f"tenant: this API key sends for {tenant!r} only")
    try:
        size = len(orjson.dumps(item))
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits, which JSON tools mangle
        return RejectedEvent(index=index, event_id=event_id, code=ErrorCode.INVALID_FIELD,
                             reason="holds a number beyond 64 bits or another unencodable value")
    if size > max_bytes:
        return RejectedEvent(index=index, event_id=event_id, code=ErrorCode.PAYLOAD_TOO_LARGE,
                             reason=f"an event may take at most {max_bytes} bytes")
    try:
        return validate_event({**item, "tenant": tenant}, now=now)
    except ValidationError as error:
        problem = problem_from_validation_error(error)
        return RejectedEvent(index=index, event_id=event_id, field=problem.field,
                             code=problem.code.value, reason=problem.message)


def validate_batch(
    items: Sequence[Any], *, tenant: str, max_bytes: int = 64 * 1024, now: datetime | None = None
) -> tuple[list[AnyEvent], list[RejectedEvent]]:
    events: list[AnyEvent] = []
    rejected: list[RejectedEvent] = []
    for index, item in enumerate(items):
        outcome = validate_one(index, item, tenant=tenant, max_bytes=max_bytes, now=now)
        if isinstance(outcome, RejectedEvent):
            rejected.append(outcome)
        else:
            events.append(outcome)
    return events, rejected
