"""Re-score customers who have gone quiet, so churn risk rises as silence grows.

A customer's scores are written when their own events arrive; a customer who stops buying
sends no events, and their stored churn probability would stay as low as on their last visit.
A sweep walks the customer index, oldest activity first, a chunk per tick, and recomputes
each customer's churn probability and explanation at the worker's watermark (event time, so a
replay of last year sweeps last year's "now").

The chunks are small and frequent (50 customers a second by default) because a tick holds
the event loop while it decodes, scores and queues its chunk: 500 customers every 10 s held it
for 130-135 ms of CPU here, and every alert in flight on the worker waited that long; 50 take
16 ms.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import redis.asyncio as aioredis

from feature_store.keys import CustomerKeys, customers_key, ranking_key
from feature_store.model_inputs import load_model_inputs
from feature_store.store import text
from online_models import ChurnModel

log = logging.getLogger(__name__)

EXPLANATION_FEATURES = 5


class SilenceSweep:
    """Walks each tenant's customers in chunks, keeping its place between ticks."""

    def __init__(self, *, redis: aioredis.Redis, churn: ChurnModel, chunk: int = 50) -> None:
        self.redis = redis
        self.churn = churn
        self.chunk = chunk
        self._cursor: dict[str, int] = {}

    async def tick(self, tenant: str, now_ms: int) -> int:
        """Re-score the next chunk of ``tenant``'s customers at ``now_ms``; returns how many."""
        if self.churn.example_count == 0:
            return 0  # an untrained model would only overwrite scores with its prior
        start = self._cursor.get(tenant, 0)
        members: list[Any] = await self.redis.zrange(customers_key(tenant), start,
                                                     start + self.chunk - 1)
        self._cursor[tenant] = 0 if len(members) < self.chunk else start + self.chunk
        customers = [text(member) for member in members]
        inputs = await load_model_inputs(self.redis, [(tenant, c) for c in customers])
        async with self.redis.pipeline(transaction=False) as pipe:
            for (_, customer), model_input in inputs.items():
                last_seen = model_input.profile.get("last_seen_at") or 0
                probability, explanation = self.churn.predict(
                    self.churn.featurize(model_input.profile, max(now_ms, last_seen)))
                contributions = [c.model_dump() for c in explanation.as_records(
                    EXPLANATION_FEATURES)]
                pipe.hset(CustomerKeys(tenant, customer).profile, mapping={
                    "churn_probability": f"{probability:.6f}",
                    "churn_explanation": orjson.dumps(contributions)})
                pipe.zadd(ranking_key(tenant, "churn"), {customer: probability})
            await pipe.execute()
        return len(inputs)
