"""Settings only the API process reads (``CRM_API_*``); Kafka and Redis come from
:class:`stream.settings.Settings`.

>>> ApiSettings(api_rate_limit=50).api_rate_limit
50
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_", frozen=True, extra="ignore")

    api_rate_limit: int = Field(
        default=1000, ge=0,
        description="Requests per key per window (0: unlimited); a key may carry its own.",
    )
    api_rate_window_s: int = Field(default=1, ge=1, le=3600,
                                   description="The fixed rate-limit window, in seconds.")
    api_key_cache_ttl_s: float = Field(
        default=2.0, ge=0, le=60,
        description="How long each API process trusts a key record it looked up (0: not at "
                    "all); a revoked key keeps working for at most this long.",
    )
    api_segments_cache_ttl_s: float = Field(
        default=1.0, ge=0, le=60,
        description="How long each API process reuses a tenant's published segments for the "
                    "labels it serves with profiles (0: read them with every profile).",
    )
    api_workers: int = Field(
        default=1, ge=1, le=64,
        description="API server processes (`crm api`); each keeps its own key cache and its "
                    "own request metrics, rate limits are shared through Redis.",
    )
    api_redis_connections: int = Field(
        default=64, ge=1, le=10_000,
        description="Redis connections per API process; more concurrent requests wait.",
    )
    api_redis_pool_timeout_s: float = Field(
        default=5.0, gt=0, description="How long a request waits for a Redis connection.",
    )
    api_flush_timeout_s: float = Field(
        default=10.0, gt=0, description="How long an ingest request waits for the broker."
    )
    api_broker_check_timeout_s: float = Field(default=2.0, gt=0)
    api_broker_check_ttl_s: float = Field(
        default=5.0, ge=0, description="How long /readyz trusts its last broker check."
    )
    api_max_body_bytes: int = Field(
        default=10 * 1024 * 1024, ge=0,
        description="Largest request body accepted (413 beyond it; 0: no limit).",
    )
    api_sse_heartbeat_s: float = Field(
        default=10.0, gt=0, description="A comment line on an idle alert stream this often."
    )
    api_alert_scan_limit: int = Field(
        default=5000, ge=100,
        description="At most this many stream entries are scanned per GET /v1/alerts.",
    )
