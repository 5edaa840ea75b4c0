"""Validate an ingest batch event by event: the good ones go on, each bad one says why.

>>> good = {"event_id": "e1", "customer_id": "c1", "type": "click", "kind": "page_view",
...         "occurred_at": "2026-01-01T10:00:00+00:00"}
>>> events, rejected = validate_batch([good, {**good, "tenant": "other"}, 7], tenant="shop")
>>> [e.tenant for e in events], [(r.index, r.code) for r in rejected]
(['shop'], [(1, 'tenant_mismatch'), (2, 'not_an_object')])

Every problem of an event is listed, each with its field and code:

>>> _, [bad] = validate_batch([{**good, "kind": "dance", "occurred_at": "2026-01-01"}],
...                           tenant="shop")
>>> [(problem.field, problem.code) for problem in bad.problems]
[('occurred_at', 'timestamp_without_offset'), ('kind', 'invalid_field')]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.api import MAX_EVENT_PROBLEMS, FieldProblem, RejectedEvent
from schemas.events import AnyEvent, validate_event
from schemas.problems import ErrorCode, problems_from_validation_error

TENANT_MISMATCH = "tenant_mismatch"


def _unencodable_field(value: Any, path: str = "") -> str | None:
    """The dotted path of the first value orjson cannot encode (an integer beyond 64 bits),
    to name it in the answer; ``None`` if none is found (too deep, say).

    >>> _unencodable_field({"a": 1, "items": [{"q": 2 ** 70}]})
    'items.0.q'
    """
    if isinstance(value, int) and not -2 ** 63 <= value < 2 ** 64:
        return path or None
    children: Any = (value.items() if isinstance(value, dict)
                     else enumerate(value) if isinstance(value, list) else ())
    for key, child in children:
        found = _unencodable_field(child, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def _event_id(item: Any) -> str | None:
    value = item.get("event_id") if isinstance(item, dict) else None
    return value[:200] if isinstance(value, str) else None


def rejection(index: int, problems: Sequence[FieldProblem],
              event_id: str | None = None) -> RejectedEvent:
    """A rejected event listing ``problems`` (at least one), summed up by the first."""
    listed = list(problems[:MAX_EVENT_PROBLEMS])
    first = listed[0]
    return RejectedEvent(index=index, event_id=event_id, field=first.field, code=first.code,
                         reason="; ".join(problem.message for problem in listed),
                         problems=listed)


def validate_one(
    index: int, item: Any, *, tenant: str, max_bytes: int, now: datetime | None = None
) -> AnyEvent | RejectedEvent:
    """One event of a batch: typed, with the caller's tenant; or every reason it was rejected."""
    if not isinstance(item, dict):
        return rejection(index, [FieldProblem(code=ErrorCode.NOT_AN_OBJECT,
                                              message="an event is a JSON object")])
    event_id = _event_id(item)
    claimed = item.get("tenant")
    if claimed is not None and claimed != tenant:
        return rejection(index, [FieldProblem(
            field="tenant", code=TENANT_MISMATCH,
            message=f"tenant: this API key sends for {tenant!r} only")], event_id)
    try:
        size = len(orjson.dumps(item))
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits, which JSON tools mangle
        return rejection(index, [FieldProblem(
            field=_unencodable_field(item), code=ErrorCode.INVALID_FIELD,
            message="holds a number beyond 64 bits or another unencodable value")], event_id)
    if size > max_bytes:
        return rejection(index, [FieldProblem(
            code=ErrorCode.PAYLOAD_TOO_LARGE,
            message=f"an event may take at most {max_bytes} bytes")], event_id)
    try:
        return validate_event({**item, "tenant": tenant}, now=now)
    except ValidationError as error:
        return rejection(index, [FieldProblem(field=problem.field, code=problem.code,
                                              message=problem.message)
                                 for problem in problems_from_validation_error(error)],
                         event_id)


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
