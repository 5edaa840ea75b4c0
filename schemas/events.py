"""The input event contract: one JSON object per event, an envelope plus a typed payload.

Validation happens once, at the boundary (the stream codec and the ingest API). Everything
inside the system trusts these typed objects. Errors name the field and carry a machine code
(see :mod:`schemas.problems`) so a dead letter or a 422 tells a shop exactly what to fix.

>>> event = decode_event(b'{"event_id": "e1", "customer_id": "c1", "type": "click",'
...                      b' "kind": "page_view", "occurred_at": "2026-01-01T10:00:00+00:00"}')
>>> event.type, event.kind.value, event.tenant
('click', 'page_view', 'default')
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

#: How far in the future (by the wall clock of the validating process) an event may claim to be.
MAX_FUTURE_SKEW = timedelta(days=1)
#: The earliest event time accepted: before it, dates near year 1 fail in date arithmetic
#: (a time zone's offset takes them out of range) long after the event was accepted.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
#: The largest amount (a total, a unit price) accepted: summed in integer cents, a
#: customer's revenue must stay far inside 64 bits.
MAX_AMOUNT = 1e12

#: Rounding slack allowed per order line when checking a purchase ``total`` against its items.
TOTAL_TOLERANCE_PER_LINE = 0.01

#: An id: 1-200 characters, none a control character (a NUL, a line break or an escape in an
#: id would travel into logs, Redis keys and answers).
Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class ClickKind(StrEnum):
    PAGE_VIEW = "page_view"
    PRODUCT_VIEW = "product_view"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    SEARCH = "search"
    CHECKOUT_START = "checkout_start"


class TicketStatus(StrEnum):
    OPENED = "opened"
    REPLIED = "replied"
    RESOLVED = "resolved"
    REOPENED = "reopened"


class Envelope(BaseModel):
    """Fields every event carries, whatever its ``type``.

    ``customer_id`` may be omitted only when ``anonymous_id`` is given: such an event belongs
    to an anonymous visitor until an event carrying both ids stitches the two together.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Identifier
    customer_id: Identifier | None = None
    anonymous_id: Identifier | None = None
    session_id: Identifier | None = None
    tenant: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = (
        "default"
    )
    schema_version: Annotated[int, Field(ge=1, le=1)] = 1
    occurred_at: AwareDatetime
    marketing_consent: bool | None = None

    @field_validator("occurred_at")
    @classmethod
    def _not_in_the_future(cls, value: datetime, info: ValidationInfo) -> datetime:
        now = (info.context or {}).get("now") or datetime.now(UTC)
        if value - now > MAX_FUTURE_SKEW:
            raise PydanticCustomError(
                "timestamp_in_future",
                "more than a day in the future ({value})",
                {"value": value.isoformat()},
            )
        if value < EARLIEST:
            raise PydanticCustomError(
                "invalid_field", "before 1970-01-01T00:00:00Z ({value})",
                {"value": value.isoformat()})
        return value

    @model_validator(mode="after")
    def _has_an_identity(self) -> Envelope:
        if self.customer_id is None and self.anonymous_id is None:
            raise PydanticCustomError(
                "missing_field",
                "required (or anonymous_id for a visitor)",
                {"field": "customer_id"},
            )
        return self

    @property
    def partition_key(self) -> str:
        """The Kafka key: the customer, or the anonymous visitor when no customer is known."""
        return self.customer_id or f"anon:{self.anonymous_id}"

    @cached_property
    def occurred_at_ms(self) -> int:
        """Event time in epoch milliseconds (computed once: the worker reads it often)."""
        return int(self.occurred_at.timestamp() * 1000)


class ClickEvent(Envelope):
    type: Literal["click"]
    kind: ClickKind
    product_id: Identifier | None = None
    category: Annotated[str, Field(max_length=200)] | None = None
    query: Annotated[str, Field(max_length=1000)] | None = None
    url: Annotated[str, Field(max_length=4000)] | None = None


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    product_id: Identifier
    # Constraints checked in pydantic-core (fast); a breach is reported as "negative_amount".
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    unit_price: Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
    category: Annotated[str, Field(max_length=200)] | None = None


class PurchaseEvent(Envelope):
    type: Literal["purchase"]
    order_id: Identifier
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=500)]
    total: Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]

    @model_validator(mode="after")
    def _total_matches_items(self) -> PurchaseEvent:
        expected = sum(item.quantity * item.unit_price for item in self.items)
        tolerance = TOTAL_TOLERANCE_PER_LINE * (len(self.items) + 1)
        if abs(expected - self.total) > tolerance:
            raise PydanticCustomError(
                "total_mismatch",
                "total {total} disagrees with the sum of its items {expected}",
                {"total": self.total, "expected": f"{expected:.2f}", "field": "total"},
            )
        return self

    @property
    def items_bought(self) -> int:
        return sum(item.quantity for item in self.items)


#: What a ticket is about, as support tools file it (see :mod:`online_models.triage`).
TicketCategory = Literal["billing", "delivery", "product", "account", "other"]


class TicketEvent(Envelope):
    type: Literal["ticket"]
    ticket_id: Identifier
    status: TicketStatus
    channel: Annotated[str, Field(max_length=50)] = "email"
    subject: Annotated[str, Field(max_length=500)] = ""
    body: Annotated[str, Field(max_length=20_000)] = ""
    csat: Annotated[int, Field(ge=1, le=5)] | None = None
    #: The category support filed the ticket under, when its tool says (usually when an agent
    #: resolves it): a label the triage model learns from, with the event's subject and body
    #: (help desks send the whole ticket on each update). Optional; never needed.
    category: TicketCategory | None = None

    @model_validator(mode="after")
    def _csat_only_on_resolve(self) -> TicketEvent:
        if self.csat is not None and self.status is not TicketStatus.RESOLVED:
            raise PydanticCustomError(
                "invalid_field", "only given when a ticket is resolved", {"field": "csat"}
            )
        return self


#: Any valid input event, as the codec and the ingest API hand it on.
AnyEvent = ClickEvent | PurchaseEvent | TicketEvent
Event = Annotated[AnyEvent, Field(discriminator="type")]

EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(Event)
EVENT_LIST_ADAPTER: TypeAdapter[list[Any]] = TypeAdapter(list[Any])


def decode_event(
    data: bytes | str, *, now: datetime | None = None
) -> AnyEvent:
    """Parse and validate one event from JSON; raises ``pydantic.ValidationError``."""
    context = {"now": now} if now is not None else None
    return EVENT_ADAPTER.validate_json(data, context=context)


def validate_event(
    obj: Any, *, now: datetime | None = None
) -> AnyEvent:
    """Validate an already-parsed JSON object (the ingest API path)."""
    context = {"now": now} if now is not None else None
    return EVENT_ADAPTER.validate_python(obj, context=context)


def topic_for(event: AnyEvent) -> str:
    """The input topic an event belongs on."""
    from schemas.topics import CLICKS, PURCHASES, TICKETS

    return {"click": CLICKS, "purchase": PURCHASES, "ticket": TICKETS}[event.type]
