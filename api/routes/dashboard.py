"""The dashboard page (``/``, static) and the one read it polls (``/v1/dashboard``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import ReadKey, StateDep
from api.errors import error_responses
from api.routes.customers import at_risk
from schemas.api import DashboardSummary

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The page itself holds no data; it asks for ``?key=`` and sends it as a header."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})


@router.get("/v1/dashboard", summary="Everything the dashboard draws, in one read",
            responses=error_responses(401, 403, 429))
async def dashboard(state: StateDep, api_key: ReadKey) -> DashboardSummary:
    system = state.system
    counters = await system.counters(state.settings.topic_prefix)
    return DashboardSummary(
        tenant=api_key.tenant,
        customers=await state.profiles.customer_count(api_key.tenant),
        throughput=await system.throughput(limit=180),
        counters=counters,
        processed_total=sum(c.count for c in counters),
        segments=await system.segments(api_key.tenant),
        at_risk=(await at_risk(state, api_key, limit=10)).customers,
        alerts=await system.alerts(api_key.tenant, limit=20, scan_limit=2000),
        models=await system.models(),
        model_history=await system.model_history(limit=600),
        generated_at=datetime.now(UTC))
