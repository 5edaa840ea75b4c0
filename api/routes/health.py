"""Probes and scrapes: ``/healthz``, ``/readyz``, ``/metrics`` (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from redis.exceptions import RedisError

from api.deps import StateDep
from api.metrics import CONTENT_TYPE, render_pipeline
from schemas.api import Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Redis and the broker are reachable",
            responses={503: {"model": Readiness}})
async def readyz(state: StateDep, response: Response) -> Readiness:
    try:
        redis_status = "ok" if await state.redis.ping() else "unreachable"  # type: ignore[misc]
    except (RedisError, OSError):
        redis_status = "unreachable"
    checks = {"redis": redis_status, "broker": await state.broker_check.status()}
    ready = all(status == "ok" for status in checks.values())
    if not ready:
        response.status_code = 503
    return Readiness(status="ready" if ready else "unavailable", checks=checks)


@router.get("/metrics", summary="Prometheus metrics of the API and the pipeline",
            response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(state: StateDep) -> Response:
    body = state.metrics.render()
    try:
        counters = await state.system.counters(state.settings.topic_prefix)
        throughput = await state.system.throughput(limit=1)
        body += render_pipeline(counters, throughput[-1] if throughput else None)
    except (RedisError, OSError):
        body += b"# pipeline counters unavailable: Redis is unreachable\n"
    return Response(body, media_type=CONTENT_TYPE)
