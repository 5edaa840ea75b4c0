"""``/readyz``: is Redis answering, and is the broker reachable (checked at most every few s)."""

from __future__ import annotations

import logging
import time

import anyio
from confluent_kafka.admin import AdminClient

from stream.settings import Settings, kafka_client_config

log = logging.getLogger(__name__)


class BrokerCheck:
    """Lists the broker's topics with a short timeout; caches the answer for ``ttl_s``."""

    def __init__(self, *, settings: Settings, timeout_s: float, ttl_s: float) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self._admin: AdminClient | None = None
        self._checked_at = -float("inf")
        self._last: str = "unknown"
        self._lock = anyio.Lock()

    def _list_topics(self) -> str:
        if self._admin is None:
            self._admin = AdminClient(kafka_client_config(self.settings))
        try:
            metadata = self._admin.list_topics(timeout=self.timeout_s)
        except Exception as error:  # KafkaException and friends: the broker is not reachable
            log.warning("broker check failed: %s", error)
            return "unreachable"
        return "ok" if metadata.brokers else "unreachable"

    async def status(self) -> str:
        async with self._lock:
            if time.monotonic() - self._checked_at >= self.ttl_s:
                self._last = await anyio.to_thread.run_sync(self._list_topics)
                self._checked_at = time.monotonic()
            return self._last
