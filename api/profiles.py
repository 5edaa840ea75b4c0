"""``GET /v1/customers/{id}`` in one Redis round trip: the request's rate-limit count and the
profile reads (:func:`feature_store.reads.queue_profile_reads`) share a pipeline."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from api.auth import RateCount
from feature_store.reads import execute_reads, profile_from_replies, queue_profile_reads
from schemas.profile import CustomerProfile


async def read_profile(redis: aioredis.Redis, tenant: str, customer_id: str,
                       pending: RateCount | None) -> CustomerProfile | None:
    """The customer's profile (``None`` if unknown), counting ``pending`` first (may raise 429:
    then nothing is returned, whether or not the customer exists)."""
    def queue(pipe: Pipeline) -> None:
        if pending is not None:
            pending.queue(pipe)
        queue_profile_reads(pipe, tenant, customer_id)

    replies = await execute_reads(redis, queue)
    if pending is not None:
        pending.check(replies[0])
        replies = replies[RateCount.REPLIES:]
    return profile_from_replies(tenant, customer_id, replies)
