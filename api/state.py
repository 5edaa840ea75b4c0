"""What the app holds for its lifetime: settings, the Redis client, the producer, checks.

Built in one place (:func:`api.main.create_app`), with overrides for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from api.keys import KeyCache
from api.metrics import ApiMetrics
from api.publish import Publisher
from api.readiness import BrokerCheck
from api.segments_cache import SegmentsCache
from api.settings import ApiSettings
from feature_store.client import AsyncRedis
from feature_store.reads import ProfileReader, SystemReader
from stream.settings import Settings


@dataclass
class AppState:
    settings: Settings
    api_settings: ApiSettings
    redis: AsyncRedis
    publisher: Publisher
    broker_check: BrokerCheck
    key_cache: KeyCache
    segments_cache: SegmentsCache
    metrics: ApiMetrics = field(default_factory=ApiMetrics)

    @property
    def profiles(self) -> ProfileReader:
        return ProfileReader(redis=self.redis)

    @property
    def system(self) -> SystemReader:
        return SystemReader(redis=self.redis)
