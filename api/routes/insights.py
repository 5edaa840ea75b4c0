"""Beyond single customers: the revenue forecast and triaged support tickets."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.exceptions import RequestValidationError

from api.deps import ReadKey, StateDep
from api.errors import ApiProblem, error_responses
from schemas.api import FORECAST_HORIZONS, RevenueForecast
from schemas.profile import Ticket

router = APIRouter(prefix="/v1", tags=["insights"], responses=error_responses(401, 403, 422,
                                                                              429))

@router.get("/forecast", summary="Revenue ahead with prediction intervals, and recent actuals",
            responses=error_responses(404))
async def forecast(
    state: StateDep, api_key: ReadKey,
    granularity: Literal["hour", "day"] = "day",
    horizon: Annotated[int, Query(ge=1, le=max(FORECAST_HORIZONS.values()), description=(
        "Buckets ahead (days: at most 90, hours: at most 168)."))] = 14,
    category: Annotated[str, Query(min_length=1, max_length=200,
                                   description="A product category, or all.")] = "all",
) -> RevenueForecast:
    if horizon > FORECAST_HORIZONS[granularity]:
        raise RequestValidationError([{
            "loc": ("query", "horizon"), "type": "less_than_equal",
            "msg": f"at most {FORECAST_HORIZONS[granularity]} for {granularity}s"}])
    found = await state.system.forecast(api_key.tenant, category=category,
                                          granularity=granularity, horizon=horizon)
    if found is None:
        raise ApiProblem(404, "not_found", f"no revenue series by {granularity} for category "
                                           f"{category!r} yet (no purchase seen)")
    return found


@router.get("/tickets/{ticket_id}", summary="A support ticket: status, category, urgency, "
                                            "sentiment", responses=error_responses(404))
async def ticket(
    ticket_id: Annotated[str, Path(min_length=1, max_length=200)], state: StateDep,
    api_key: ReadKey,
) -> Ticket:
    found = await state.profiles.ticket(api_key.tenant, ticket_id)
    if found is None:
        raise ApiProblem(404, "not_found", f"no ticket {ticket_id!r}")
    return found
