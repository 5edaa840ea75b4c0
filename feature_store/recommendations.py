"""Recommendation lists, as the recommender process writes them (a synchronous client: the
process has no event loop, and a hung Redis must cost it lists, not the worker)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis

from feature_store.keys import CustomerKeys

CustomerKey = tuple[str, str]

#: What a failed write raises (the lists come again when next due).
WRITE_FAILED: tuple[type[BaseException], ...] = (redis.RedisError, OSError)


class RecommendationLists:
    """Each customer's top-N list (JSON, as the API serves it) under their hash tag."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s)

    def write(self, lists: Mapping[CustomerKey, bytes], erased: Sequence[CustomerKey]) -> None:
        """The lists, and no list for an erased customer (one the worker deleted may have
        been written again since), in one round trip."""
        if not lists and not erased:
            return
        with self._client.pipeline(transaction=False) as pipe:
            for (tenant, customer), value in lists.items():
                pipe.set(CustomerKeys(tenant, customer).recos, value)
            for tenant, customer in erased:
                pipe.delete(CustomerKeys(tenant, customer).recos)
            pipe.execute()

    def close(self) -> None:
        self._client.close()
