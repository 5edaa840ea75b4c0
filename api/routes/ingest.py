"""Ingest: batches of our events, and Segment / RudderStack tracking batches."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import IngestKey, StateDep
from api.errors import ApiProblem, error_responses
from api.ingest import rejection, validate_batch, validate_one
from api.publish import PublishError
from api.responses import ORJSONResponse
from api.segment import UnmappableCall, to_event
from api.state import AppState
from schemas.api import (
    ApiError,
    EventBatchIn,
    FieldProblem,
    IngestRejected,
    IngestResult,
    RejectedEvent,
    SegmentBatchIn,
)
from schemas.events import AnyEvent

router = APIRouter(prefix="/v1", tags=["ingest"],
                   responses=error_responses(401, 403, 413, 422, 429, 503))

UNKNOWN_EVENT = "unknown_event"

#: The answers of both ingest routes: accepted events are on the broker when they are sent.
#: 202 as long as one event was accepted, 422 when none was (a client that reads only the
#: status still learns that nothing went through); both bodies list every rejected event.
INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "At least one event was accepted and published; every rejected "
                         "one is listed with its index and problems."},
    422: {"model": IngestRejected | ApiError,
          "description": "No event was accepted: nothing was published and every event is "
                         "listed with its problems (error no_event_accepted); or the body is "
                         "not a batch at all (invalid_json, invalid_body)."},
}


async def _answer(state: AppState, events: list[AnyEvent],
                  rejected: list[RejectedEvent]) -> IngestResult | ORJSONResponse:
    """Publish the accepted events: 202 with the rejected ones listed, or 422 if none was."""
    if not events:
        answer = IngestRejected(rejected=rejected, message=(
            f"no event was accepted ({len(rejected)} rejected); each is listed under "
            "rejected with its problems"))
        return ORJSONResponse(answer.model_dump(mode="json"), status_code=422)
    try:
        await state.publisher.events(events)
    except PublishError as error:
        raise ApiProblem(503, "unavailable",
                         "the broker did not confirm the batch; retry it (events are "
                         "deduplicated by event_id)") from error
    return IngestResult(accepted=len(events), rejected=rejected)


@router.post("/events", status_code=202, response_model=IngestResult,
             responses=INGEST_RESPONSES, summary="Ingest a batch of up to 1,000 events")
async def ingest_events(body: EventBatchIn, state: StateDep,
                        api_key: IngestKey) -> IngestResult | ORJSONResponse:
    """Valid events are on the broker when this answers; every rejected one is listed with
    its index and each of its problems (field, code, words). Events carry the key's tenant
    (another is rejected). 202 if at least one event was accepted, 422 if none was."""
    events, rejected = validate_batch(body.events, tenant=api_key.tenant,
                                      max_bytes=state.settings.max_event_bytes)
    return await _answer(state, events, rejected)


@router.post("/segment/batch", status_code=202, response_model=IngestResult,
             responses=INGEST_RESPONSES,
             summary="Ingest a Segment / RudderStack tracking batch")
async def ingest_segment_batch(body: SegmentBatchIn, state: StateDep,
                               api_key: IngestKey) -> IngestResult | ORJSONResponse:
    """``track`` (e-commerce events), ``identify`` and ``page`` calls become our events;
    calls that cannot be mapped are rejected one by one, with their index and problems.
    202 if at least one call was accepted, 422 if none was."""
    events: list[AnyEvent] = []
    rejected: list[RejectedEvent] = []
    for index, call in enumerate(body.batch):
        try:
            mapped: Any = to_event(call, sent_at=body.sentAt)
        except UnmappableCall as error:
            message_id = call.get("messageId") if isinstance(call, dict) else None
            rejected.append(rejection(
                index, [FieldProblem(field=error.field, code=UNKNOWN_EVENT, message=str(error))],
                message_id if isinstance(message_id, str) else None))
            continue
        outcome = validate_one(index, mapped, tenant=api_key.tenant,
                               max_bytes=state.settings.max_event_bytes)
        if isinstance(outcome, RejectedEvent):
            rejected.append(outcome)
        else:
            events.append(outcome)
    return await _answer(state, events, rejected)
