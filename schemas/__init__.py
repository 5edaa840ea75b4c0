"""Event envelope and payloads, alert and dead-letter records, JSON Schema export."""

from schemas.events import (
    AnyEvent,
    ClickEvent,
    ClickKind,
    Envelope,
    Event,
    OrderItem,
    PurchaseEvent,
    TicketEvent,
    TicketStatus,
    decode_event,
    topic_for,
    validate_event,
)
from schemas.problems import ErrorCode, Problem, problem_from_validation_error
from schemas.records import (
    Alert,
    AlertKind,
    Contribution,
    DeadLetter,
    ErasureRequest,
    alert_id_for,
    dead_letter_id_for,
)

__all__ = [
    "Alert",
    "AlertKind",
    "AnyEvent",
    "ClickEvent",
    "ClickKind",
    "Contribution",
    "DeadLetter",
    "Envelope",
    "ErasureRequest",
    "ErrorCode",
    "Event",
    "OrderItem",
    "Problem",
    "PurchaseEvent",
    "TicketEvent",
    "TicketStatus",
    "alert_id_for",
    "dead_letter_id_for",
    "decode_event",
    "problem_from_validation_error",
    "topic_for",
    "validate_event",
]
