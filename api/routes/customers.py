"""Customers: live profile, recommendations, and who is most at risk of churning."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from api.deps import ReadKey, StateDep
from api.errors import error_responses
from api.profiles import MAX_CUSTOMER_ID, not_found, profile_response
from schemas.api import AtRiskCustomer, AtRiskList, RecommendationList
from schemas.profile import CustomerProfile, Ticket

router = APIRouter(prefix="/v1/customers", tags=["customers"],
                   responses=error_responses(401, 403, 422, 429))

CustomerId = Annotated[str, Path(min_length=1, max_length=MAX_CUSTOMER_ID)]


@router.get("/at-risk", summary="Customers most likely to churn, with explanations")
async def at_risk(
    state: StateDep, api_key: ReadKey, limit: Annotated[int, Query(ge=1, le=100)] = 10
) -> AtRiskList:
    ranked = await state.profiles.top_profiles(api_key.tenant, "churn", limit)
    return AtRiskList(customers=[
        AtRiskCustomer(
            customer_id=profile.customer_id, churn_probability=probability,
            scores=profile.scores, churn_explanation=profile.churn_explanation,
            last_seen_at=profile.features.last_seen_at, updated_at=profile.updated_at)
        for probability, profile in ranked
    ])


@router.get("/{customer_id}", summary="A customer's live features, scores and explanations",
            response_model=CustomerProfile, responses=error_responses(404))
async def customer(customer_id: CustomerId, request: Request) -> Response:
    # Most of these requests never get here: api.fast_path answers them before routing.
    return await profile_response(request, customer_id)


@router.get("/{customer_id}/recommendations", summary="Products to show this customer",
            responses=error_responses(404))
async def recommendations(
    customer_id: CustomerId, state: StateDep, api_key: ReadKey,
    n: Annotated[int, Query(ge=1, le=100)] = 10,
) -> RecommendationList:
    found = await state.profiles.recommendations_of_known(api_key.tenant, customer_id)
    if found is None:
        raise not_found(customer_id)
    return RecommendationList(customer_id=customer_id, recommendations=found[:n])


@router.get("/{customer_id}/tickets", summary="A customer's support tickets, open first, "
                                              "triaged", responses=error_responses(404))
async def tickets(customer_id: CustomerId, state: StateDep, api_key: ReadKey) -> list[Ticket]:
    found = await state.profiles.tickets(api_key.tenant, customer_id)
    if found is None:
        raise not_found(customer_id)
    return found
