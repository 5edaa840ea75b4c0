"""Records the system emits: alerts for marketing automation, dead letters, erasure requests."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.problems import ErrorCode


class AlertKind(StrEnum):
    CHURN_RISK = "churn_risk"
    HIGH_VALUE = "high_value"
    NEGATIVE_TICKET = "negative_ticket"
    ANOMALOUS_PURCHASE = "anomalous_purchase"
    CART_ABANDONMENT = "cart_abandonment"
    SEGMENT_CHANGE = "segment_change"
    #: A model's error rose (ADWIN on its progressive error): its scores are less to be
    #: trusted until it has learnt the change. ``customer_id`` is empty; ``triggered_by``
    #: names the model.
    MODEL_DRIFT = "model_drift"


class Contribution(BaseModel):
    """One feature's signed share of a score (in the model's link space, e.g. the logit)."""

    feature: str
    value: float
    contribution: float


class Alert(BaseModel):
    """One alert on ``crm.alerts``: worth acting on, explained, and repeatable by id."""

    model_config = ConfigDict(frozen=True)

    alert_id: str
    kind: AlertKind
    customer_id: str
    tenant: str = "default"
    score: float
    threshold: float
    reason: str
    explanation: list[Contribution] = Field(default_factory=list)
    triggered_by: str
    occurred_at: datetime
    emitted_at: datetime
    model_version: str


def alert_id_for(*, tenant: str, customer_id: str, kind: str, triggered_by: str) -> str:
    """Deterministic id so a redelivered trigger repeats the same alert id.

    >>> alert_id_for(tenant="t", customer_id="c", kind="churn_risk", triggered_by="e1")
    'al_145c9d812f1ae06c93ac4d51'
    """
    digest = hashlib.blake2b(
        f"{tenant}\x1f{customer_id}\x1f{kind}\x1f{triggered_by}".encode(), digest_size=12
    ).hexdigest()
    return f"al_{digest}"


#: At most this much of an invalid message is copied into its dead letter: a record over the
#: broker's message size (1 MB by default) could never be published, and would hold up the
#: batch behind it for good.
DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024


class DeadLetter(BaseModel):
    """An input message that could not be used, with everything needed to fix and replay it."""

    dead_letter_id: str
    source_topic: str
    source_partition: int
    source_offset: int
    payload_text: str | None = Field(
        default=None, description="The original bytes decoded as UTF-8, when they are UTF-8."
    )
    payload_base64: str | None = Field(
        default=None, description="The original bytes, base64, when they are not valid UTF-8."
    )
    payload_bytes: int | None = Field(
        default=None, description="The size of the original message in bytes.")
    payload_truncated: bool = Field(
        default=False, description="Only the first DEAD_LETTER_PAYLOAD_BYTES of the original "
        "are kept (a dead letter must fit in a broker message); the whole message stays at "
        "its source offset.")
    error_code: ErrorCode
    error: str
    field: str | None = None
    seen_at: datetime


def dead_letter_id_for(topic: str, partition: int, offset: int) -> str:
    """One id per source message, so a redelivered message repeats the same dead letter id."""
    return f"dl_{topic}_{partition}_{offset}"


class ErasureRequest(BaseModel):
    """Published on ``crm.erasure`` by the API; the worker deletes the customer and blocks them."""

    receipt_id: str
    tenant: str = "default"
    customer_id: str
    requested_at: datetime
