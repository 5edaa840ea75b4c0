"""Public HTTP API shapes: what comes in (``...In``) and what goes out.

Customer profiles and recommendations are in :mod:`schemas.profile`; alerts in
:mod:`schemas.records`. Everything here is what only the HTTP API speaks.

>>> RejectedEvent(index=3, field="total", code="total_mismatch", reason="total: ...").index
3
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator

from schemas.events import Event
from schemas.profile import CustomerScores, Recommendation
from schemas.records import Alert, Contribution

#: The most events one ingest request may carry.
MAX_BATCH_EVENTS = 1000


class Scope(StrEnum):
    """What an API key may do; every key is bound to one tenant."""

    READ = "read"
    INGEST = "ingest"
    ADMIN = "admin"


# -- errors ------------------------------------------------------------------------------------


class FieldProblem(BaseModel):
    field: str | None = None
    code: str
    message: str


class ApiError(BaseModel):
    """Every error answer: a machine code, words for people, and the fields at fault."""

    error: str = Field(description="Machine code, e.g. unauthorized, forbidden, not_found.")
    message: str
    problems: list[FieldProblem] = Field(default_factory=list)


# -- ingest ------------------------------------------------------------------------------------


class SegmentCallIn(BaseModel):
    """One Segment / RudderStack tracking call (``track``, ``identify`` or ``page``)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: str
    event: str | None = None
    # Segment's own camelCase names, so a forwarded call validates as is.
    userId: str | int | None = None
    anonymousId: str | int | None = None
    messageId: str | None = None
    timestamp: str | None = None
    originalTimestamp: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)


def _as_given(value: Any) -> Any:
    return value


#: An event as documented (the schema of :data:`schemas.events.Event`), taken as given here:
#: each is validated on its own, so one bad event is rejected alone, not the whole batch.
EventItem = Annotated[Any, PlainValidator(_as_given, json_schema_input_type=Event)]
#: A Segment call as documented, likewise validated one by one.
SegmentCallItem = Annotated[Any, PlainValidator(_as_given, json_schema_input_type=SegmentCallIn)]


class EventBatchIn(BaseModel):
    """A batch of events as described in DESIGN.md; each one is validated on its own."""

    events: Annotated[list[EventItem], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]


#: The most problems listed for one rejected event.
MAX_EVENT_PROBLEMS = 50


class RejectedEvent(BaseModel):
    """An event that was not accepted, with every problem it has; ``field``, ``code`` and
    ``reason`` sum them up for clients that read one."""

    index: int = Field(description="Position of the event in the request's list.")
    event_id: str | None = None
    field: str | None = Field(default=None, description="The first problem's field.")
    code: str = Field(description="The first problem's code: an ErrorCode, or "
                                  "tenant_mismatch / unknown_event.")
    reason: str = Field(description="Every problem, in words.")
    problems: list[FieldProblem] = Field(
        default_factory=list, max_length=MAX_EVENT_PROBLEMS,
        description="Every problem of the event (up to 50), each with its field path and code.")


class IngestResult(BaseModel):
    """Accepted events are on the broker when this answer is sent."""

    accepted: int
    rejected: list[RejectedEvent] = Field(default_factory=list)


class IngestRejected(IngestResult):
    """The 422 answer when no event of a request was accepted: nothing was published, and
    every rejected event is listed as in a 202 answer."""

    accepted: Literal[0] = 0
    error: Literal["no_event_accepted"] = "no_event_accepted"
    message: str


class SegmentBatchIn(BaseModel):
    """The body of Segment's ``/v1/batch`` (RudderStack sends the same shape)."""

    model_config = ConfigDict(extra="allow")

    batch: Annotated[list[SegmentCallItem], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]
    sentAt: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)


# -- customers ---------------------------------------------------------------------------------


class AtRiskCustomer(BaseModel):
    customer_id: str
    churn_probability: float
    scores: CustomerScores = Field(default_factory=CustomerScores)
    churn_explanation: list[Contribution] = Field(default_factory=list)
    last_seen_at: datetime | None = None
    updated_at: datetime | None = None


class AtRiskList(BaseModel):
    customers: list[AtRiskCustomer]


class RecommendationList(BaseModel):
    customer_id: str
    recommendations: list[Recommendation] = Field(description="Best first.")


# -- erasure -----------------------------------------------------------------------------------


class ErasureAccepted(BaseModel):
    receipt_id: str
    status: Literal["pending"] = "pending"
    status_url: str


class ErasureStatus(BaseModel):
    receipt_id: str
    customer_id: str
    status: Literal["pending", "done"]
    requested_at: datetime | None = None
    completed_at: datetime | None = None


# -- alerts, segments, models ------------------------------------------------------------------


class AlertList(BaseModel):
    alerts: list[Alert]


class SegmentOut(BaseModel):
    segment: int
    label: str
    size: int
    centroid: dict[str, float] = Field(default_factory=dict)


class SegmentList(BaseModel):
    segments: list[SegmentOut]


class ModelOut(BaseModel):
    name: str
    version: str | None = None
    example_count: int = 0
    metrics: dict[str, float | None] = Field(default_factory=dict)
    updated_at: datetime | None = None
    drifted_at: datetime | None = Field(
        None, description="Event time the model's error last rose (ADWIN on its progressive "
                          "error; null: never).")


#: Buckets ahead each worker publishes per granularity: the longest ``GET /v1/forecast``.
FORECAST_HORIZONS: dict[str, int] = {"hour": 168, "day": 90}


class ForecastPoint(BaseModel):
    start: datetime = Field(description="Start of the hour or day (UTC).")
    revenue: float
    lower: float
    upper: float


class ForecastActual(BaseModel):
    start: datetime
    revenue: float = Field(description="Revenue of the closed hour or day.")
    forecast: float | None = Field(None, description="What was forecast for it beforehand.")


class RevenueForecast(BaseModel):
    """Revenue ahead, with prediction intervals, and the recent buckets beside their forecast.

    Buckets close in event time, as the watermark passes them. Each worker forecasts the
    revenue of its partitions; the answer adds them up (its interval bounds too, which makes
    them wider than the sum's own would be)."""

    category: str
    granularity: Literal["hour", "day"]
    status: Literal["ready", "warming_up"]
    as_of: datetime | None = Field(None, description="Start of the first forecast bucket.")
    buckets_learnt: int = 0
    interval_level: float = 0.9
    mape: float | None = None
    mase: float | None = None
    coverage: float | None = Field(None, description="Share of closed buckets inside the "
                                                     "interval forecast for them.")
    workers: int = Field(0, description="Workers whose forecasts were added up.")
    points: list[ForecastPoint] = Field(default_factory=list)
    history: list[ForecastActual] = Field(default_factory=list)


class ModelList(BaseModel):
    models: list[ModelOut]


class ModelSnapshot(BaseModel):
    at: datetime
    model: str
    metrics: dict[str, float | None]


class ThroughputSample(BaseModel):
    at: datetime
    events_per_s: float
    lag: float | None = None


class PipelineCounter(BaseModel):
    topic: str
    outcome: str
    count: int


class DashboardSummary(BaseModel):
    """Everything the dashboard draws, in one read."""

    tenant: str
    customers: int
    throughput: list[ThroughputSample]
    counters: list[PipelineCounter]
    processed_total: int
    segments: list[SegmentOut]
    at_risk: list[AtRiskCustomer]
    alerts: list[Alert]
    models: list[ModelOut]
    model_history: list[ModelSnapshot]
    generated_at: datetime


# -- health ------------------------------------------------------------------------------------


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
