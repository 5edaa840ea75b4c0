"""``GET /v1/customers/{id}``, the API's hot read, in one Redis round trip: the request's
rate-limit count and the profile reads (:func:`feature_store.reads.queue_profile_reads`) share a
pipeline. Served by :mod:`api.fast_path` and, for requests it leaves alone, by the route in
:mod:`api.routes.customers`; both call :func:`profile_response`.
"""

from __future__ import annotations

import time

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from api.auth import RateCount, authorize
from api.errors import ApiProblem
from api.segments_cache import SegmentsCache
from api.state import AppState
from feature_store.client import AsyncRedis, Pipeline
from feature_store.reads import (
    PublishedSegments,
    execute_reads,
    profile_from_replies,
    queue_profile_reads,
)
from schemas.api import Scope
from schemas.profile import CustomerProfile

_PROFILE_JSON = TypeAdapter(CustomerProfile).serializer

PROFILE_ROUTE = "/v1/customers/{customer_id}"
#: The longest customer id a path may carry (the route answers 422 beyond it).
MAX_CUSTOMER_ID = 200


def not_found(customer_id: str) -> ApiProblem:
    return ApiProblem(404, "not_found", f"no customer {customer_id!r}")


async def read_profile(redis: AsyncRedis, tenant: str, customer_id: str,
                       pending: RateCount | None, segments: SegmentsCache | None = None
                       ) -> CustomerProfile | None:
    """The customer's profile (``None`` if unknown), counting ``pending`` first (may raise 429:
    then nothing is returned, whether or not the customer exists); the tenant's segments
    from ``segments`` while it has them."""
    now = time.monotonic()
    cached = segments.get(tenant, now) if segments is not None else None

    def queue(pipe: Pipeline) -> None:
        if pending is not None:
            pending.queue(pipe)
        queue_profile_reads(pipe, tenant, customer_id, segments=cached is None)

    replies = await execute_reads(redis, queue)
    if pending is not None:
        pending.check(replies[0])
        replies = replies[RateCount.REPLIES:]
    if cached is None:
        *replies, raw_segments = replies
        cached = PublishedSegments.from_raw(raw_segments)
        if segments is not None:
            segments.put(tenant, cached, now)
    return profile_from_replies(tenant, customer_id, replies, cached)


async def profile_response(request: Request, customer_id: str) -> Response:
    """The answer to ``GET /v1/customers/{customer_id}`` for the calling read key; raises
    :class:`ApiProblem` (401, 403, 404, 429). The profile, already a validated model, is
    serialised once by pydantic-core instead of being re-validated by FastAPI."""
    state: AppState = request.app.state.crm
    caller = await authorize(request, Scope.READ, count=False)
    profile = await read_profile(state.redis, caller.key.tenant, customer_id, caller.pending,
                                 state.segments_cache)
    if profile is None:
        raise not_found(customer_id)
    return Response(_PROFILE_JSON.to_json(profile), media_type="application/json")
