"""Turn validation failures into one clear problem: the field, the words, a machine code.

The same problem shapes a dead letter on ``crm.deadletter`` and a rejected event in the
ingest API's 422 answer, so a shop sees the same reason wherever it sends.

>>> from schemas.events import decode_event
>>> from pydantic import ValidationError
>>> try:
...     decode_event(b'{"event_id": "e", "customer_id": "c", "type": "refund",'
...                  b' "occurred_at": "2026-01-01T00:00:00Z"}')
... except ValidationError as error:
...     problem = problem_from_validation_error(error)
>>> problem.code.value, problem.field
('unknown_type', 'type')

An event can have several problems at once; the ingest API lists them all:

>>> try:
...     decode_event(b'{"event_id": "e", "customer_id": "c", "type": "click", "kind": "dance",'
...                  b' "occurred_at": "2026-01-01T00:00:00"}')
... except ValidationError as error:
...     problems = problems_from_validation_error(error)
>>> [(problem.field, problem.code.value) for problem in problems]
[('occurred_at', 'timestamp_without_offset'), ('kind', 'invalid_field')]
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


class ErrorCode(StrEnum):
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_TYPE = "unknown_type"
    NEGATIVE_AMOUNT = "negative_amount"
    TOTAL_MISMATCH = "total_mismatch"
    TIMESTAMP_WITHOUT_OFFSET = "timestamp_without_offset"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    PAYLOAD_TOO_LARGE = "payload_too_large"


class Problem(BaseModel):
    """Why one event was rejected."""

    code: ErrorCode
    field: str | None = None
    message: str

    def __str__(self) -> str:
        return self.message


_CODE_BY_PYDANTIC_TYPE = {
    "missing": ErrorCode.MISSING_FIELD,
    "union_tag_not_found": ErrorCode.MISSING_FIELD,
    "union_tag_invalid": ErrorCode.UNKNOWN_TYPE,
    "timezone_aware": ErrorCode.TIMESTAMP_WITHOUT_OFFSET,
    "json_invalid": ErrorCode.INVALID_JSON,
    "json_type": ErrorCode.INVALID_JSON,
    "model_type": ErrorCode.NOT_AN_OBJECT,
    "model_attributes_type": ErrorCode.NOT_AN_OBJECT,
    "dict_type": ErrorCode.NOT_AN_OBJECT,
}


MONEY_AND_QUANTITY_FIELDS = ("quantity", "unit_price", "total")


def _field_path(location: tuple[int | str, ...]) -> str | None:
    # A discriminated union puts the tag ("click", ...) first in the location: drop it.
    parts = [str(part) for part in location]
    if parts and parts[0] in {"click", "purchase", "ticket"}:
        parts = parts[1:]
    return ".".join(parts) or None


def _problem(error: ErrorDetails) -> Problem:
    kind = error["type"]
    code = _CODE_BY_PYDANTIC_TYPE.get(kind)
    if code is None:
        code = ErrorCode(kind) if kind in ErrorCode._value2member_map_ else ErrorCode.INVALID_FIELD
    field = _field_path(tuple(error.get("loc", ())))
    if kind in ("greater_than_equal", "greater_than") and field and field.rsplit(".", 1)[-1] in (
        MONEY_AND_QUANTITY_FIELDS
    ):
        code = ErrorCode.NEGATIVE_AMOUNT
    if code is ErrorCode.UNKNOWN_TYPE or (kind == "union_tag_not_found"):
        field = "type"
    if field is None:
        field = (error.get("ctx") or {}).get("field")
    if kind == "union_tag_invalid":
        message = "type: unknown event type; expected one of click, purchase, ticket"
    elif field:
        message = f"{field}: {error['msg']}"
    else:
        message = str(error["msg"])
    return Problem(code=code, field=field, message=message)


def problems_from_validation_error(error: ValidationError) -> list[Problem]:
    """Every error of a pydantic ``ValidationError`` as a :class:`Problem`, in pydantic's
    order (the ingest API lists them all)."""
    return [_problem(item) for item in error.errors(include_url=False)]


def problem_from_validation_error(error: ValidationError) -> Problem:
    """The first (most telling) error of a pydantic ``ValidationError`` as a :class:`Problem`
    (a dead letter carries one)."""
    return _problem(error.errors(include_url=False)[0])
