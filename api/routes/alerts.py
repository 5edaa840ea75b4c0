"""Alerts: the recent ones, and a live Server-Sent Events stream of new ones."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.deps import ReadKey, StateDep
from api.errors import error_responses
from schemas.api import AlertList
from schemas.records import AlertKind
from stream.delivered import DeliveredIds

router = APIRouter(prefix="/v1/alerts", tags=["alerts"],
                   responses=error_responses(401, 403, 422, 429))

_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
#: Alert ids one live stream remembers to drop repeats (about 1.3 MB per connection).
SSE_DELIVERED_IDS = 10_000


@router.get("", summary="Recent alerts of this tenant, newest first")
async def list_alerts(
    state: StateDep, api_key: ReadKey,
    kind: AlertKind | None = None,
    since: Annotated[datetime | None, Query(description="Only alerts added since then")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AlertList:
    since_ms = None
    if since is not None:
        aware = since if since.tzinfo else since.replace(tzinfo=UTC)
        since_ms = max(0, int(aware.timestamp() * 1000))
    alerts = await state.system.alerts(
        api_key.tenant, kind=kind.value if kind else None, since_ms=since_ms, limit=limit,
        scan_limit=state.api_settings.api_alert_scan_limit)
    return AlertList(alerts=alerts)


@router.get("/stream", response_class=EventSourceResponse,
            summary="New alerts of this tenant as Server-Sent Events (event: alert)")
async def stream_alerts(
    state: StateDep, api_key: ReadKey,
    kind: AlertKind | None = None,
    last_event_id: Annotated[str | None, Header(max_length=50)] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Each event's id is its position, so a reconnecting client (``Last-Event-ID``) misses
    nothing; a comment line arrives every few seconds while nothing happens. An alert id is
    sent once per connection: a repeat of any of the last ``SSE_DELIVERED_IDS`` ids it sent
    (the feed takes each id once, but only for two days) is dropped."""
    last_id = last_event_id if last_event_id and _STREAM_ID.match(last_event_id) else "$"
    block_ms = int(state.api_settings.api_sse_heartbeat_s * 1000)
    delivered = DeliveredIds(SSE_DELIVERED_IDS)
    yield ServerSentEvent(comment="connected", retry=3000)
    while True:
        last_id, entries = await state.system.alerts_after(last_id, block_ms=block_ms)
        for entry_id, tenant, entry_kind, alert in entries:
            if (tenant == api_key.tenant and (kind is None or entry_kind == kind.value)
                    and delivered.first_time(alert.alert_id)):
                yield ServerSentEvent(data=alert.model_dump(mode="json"), event="alert",
                                      id=entry_id)
        if not entries:
            yield ServerSentEvent(comment="heartbeat")
