"""The HTTP API and dashboard: ``create_app`` wires settings, Redis, producer and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.body_limit import BodyLimit
from api.errors import install_error_handlers
from api.fast_path import ProfileFastPath
from api.keys import KeyCache
from api.metrics import MetricsMiddleware
from api.openapi import document_security
from api.publish import ProducerLike, Publisher
from api.readiness import BrokerCheck
from api.responses import ORJSONResponse
from api.routes import (
    alerts,
    customers,
    dashboard,
    docs,
    erasure,
    health,
    ingest,
    insights,
    models,
)
from api.routes.dashboard import STATIC_DIR
from api.segments_cache import SegmentsCache
from api.settings import ApiSettings
from api.state import AppState
from feature_store.client import AsyncRedis, connect
from stream.settings import Settings


def create_app(settings: Settings | None = None, api_settings: ApiSettings | None = None, *,
               redis: AsyncRedis | None = None,
               producer: ProducerLike | None = None, profile_fast_path: bool = True) -> FastAPI:
    """Build the app from ``CRM_*`` settings; tests may pass their own pieces (and turn
    :mod:`api.fast_path` off to compare it with the routed endpoint)."""
    settings = settings or Settings()
    api_settings = api_settings or ApiSettings()
    state = AppState(
        settings=settings, api_settings=api_settings,
        # A pool that waits for a free connection (up to a timeout) rather than failing at
        # once when every one is busy: under overload requests queue instead of erroring.
        redis=redis or connect(settings.redis_url, cluster=settings.redis_cluster,
                               pool_class=aioredis.BlockingConnectionPool,
                               max_connections=api_settings.api_redis_connections,
                               timeout=api_settings.api_redis_pool_timeout_s),
        key_cache=KeyCache(ttl_s=api_settings.api_key_cache_ttl_s),
        segments_cache=SegmentsCache(ttl_s=api_settings.api_segments_cache_ttl_s),
        publisher=Publisher(settings=settings, flush_timeout_s=api_settings.api_flush_timeout_s,
                            producer=producer),
        broker_check=BrokerCheck(settings=settings,
                                 timeout_s=api_settings.api_broker_check_timeout_s,
                                 ttl_s=api_settings.api_broker_check_ttl_s))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await anyio.to_thread.run_sync(state.publisher.close)
        if redis is None:
            await state.redis.aclose()

    # /docs is served from local files by api.routes.docs; FastAPI's own pages (and ReDoc)
    # would load their scripts from a CDN.
    app = FastAPI(title="CRM stream API", version="1.0.0", lifespan=lifespan,
                  default_response_class=ORJSONResponse, docs_url=None, redoc_url=None)
    app.state.crm = state
    install_error_handlers(app)
    # The last added is outermost: the metrics middleware sees every answer.
    app.add_middleware(BodyLimit, max_bytes=api_settings.api_max_body_bytes)
    app.add_middleware(ProfileFastPath, enabled=profile_fast_path)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    for module in (health, customers, erasure, ingest, alerts, models, insights, dashboard,
                   docs):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    document_security(app)
    return app
