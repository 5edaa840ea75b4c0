"""Ingest: batches of our events, and Segment / RudderStack tracking batches."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import IngestKey, StateDep
from api.errors import ApiProblem, error_responses
from api.ingest import validate_batch, validate_one
from api.publish import PublishError
from api.segment import UnmappableCall, to_event
from api.state import AppState
from schemas.api import EventBatchIn, IngestResult, RejectedEvent, SegmentBatchIn
from stream.producer import AnyEvent

router = APIRouter(prefix="/v1", tags=["ingest"],
                   responses=error_responses(401, 403, 422, 429, 503))

UNKNOWN_EVENT = "unknown_event"


async def _publish(state: AppState, events: list[AnyEvent],
                   rejected: list[RejectedEvent]) -> IngestResult:
    if events:
        try:
            await state.publisher.events(events)
        except PublishError as error:
            raise ApiProblem(503, "unavailable",
                             "the broker did not confirm the batch; retry it (events are "
                             "deduplicated by event_id)") from error
    return IngestResult(accepted=len(events), rejected=rejected)


@router.post("/events", status_code=202, summary="Ingest a batch of up to 1,000 events")
async def ingest_events(body: EventBatchIn, state: StateDep, api_key: IngestKey) -> IngestResult:
    """Valid events are on the broker when this answers; every rejected one is listed with
    its index, field, code and reason. Events carry the key's tenant (another is rejected)."""
    events, rejected = validate_batch(body.events, tenant=api_key.tenant,
                                      max_bytes=state.settings.max_event_bytes)
    return await _publish(state, events, rejected)


@router.post("/segment/batch", status_code=202,
             summary="Ingest a Segment / RudderStack tracking batch")
async def ingest_segment_batch(body: SegmentBatchIn, state: StateDep,
                               api_key: IngestKey) -> IngestResult:
    """``track`` (e-commerce events), ``identify`` and ``page`` calls become our events;
    calls that cannot be mapped are rejected one by one, with their index and reason."""
    events: list[AnyEvent] = []
    rejected: list[RejectedEvent] = []
    for index, call in enumerate(body.batch):
        try:
            mapped: Any = to_event(call, sent_at=body.sentAt)
        except UnmappableCall as error:
            message_id = call.get("messageId") if isinstance(call, dict) else None
            rejected.append(RejectedEvent(
                index=index, event_id=message_id if isinstance(message_id, str) else None,
                field=error.field, code=UNKNOWN_EVENT, reason=str(error)))
            continue
        outcome = validate_one(index, mapped, tenant=api_key.tenant,
                               max_bytes=state.settings.max_event_bytes)
        if isinstance(outcome, RejectedEvent):
            rejected.append(outcome)
        else:
            events.append(outcome)
    return await _publish(state, events, rejected)
