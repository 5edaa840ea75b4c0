"""Customers: live profile, recommendations, and who is most at risk of churning."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ReadKey, StateDep
from api.errors import ApiProblem, error_responses
from schemas.api import AtRiskCustomer, AtRiskList, RecommendationList
from schemas.profile import CustomerProfile

router = APIRouter(prefix="/v1/customers", tags=["customers"],
                   responses=error_responses(401, 403, 422, 429))

CustomerId = Annotated[str, Path(min_length=1, max_length=200)]


def _not_found(customer_id: str) -> ApiProblem:
    return ApiProblem(404, "not_found", f"no customer {customer_id!r}")


@router.get("/at-risk", summary="Customers most likely to churn, with explanations")
async def at_risk(
    state: StateDep, api_key: ReadKey, limit: Annotated[int, Query(ge=1, le=100)] = 10
) -> AtRiskList:
    ranked = await state.profiles.ranked(api_key.tenant, "churn", limit)
    profiles = await state.profiles.profiles(api_key.tenant, [cid for cid, _ in ranked])
    return AtRiskList(customers=[
        AtRiskCustomer(
            customer_id=customer_id, churn_probability=probability, scores=profile.scores,
            churn_explanation=profile.churn_explanation,
            last_seen_at=profile.features.last_seen_at, updated_at=profile.updated_at)
        for (customer_id, probability), profile in zip(ranked, profiles, strict=True)
        if profile is not None
    ])


@router.get("/{customer_id}", summary="A customer's live features, scores and explanations",
            responses=error_responses(404))
async def customer(customer_id: CustomerId, state: StateDep, api_key: ReadKey) -> CustomerProfile:
    profile = await state.profiles.profile(api_key.tenant, customer_id)
    if profile is None:
        raise _not_found(customer_id)
    return profile


@router.get("/{customer_id}/recommendations", summary="Products to show this customer",
            responses=error_responses(404))
async def recommendations(
    customer_id: CustomerId, state: StateDep, api_key: ReadKey,
    n: Annotated[int, Query(ge=1, le=100)] = 10,
) -> RecommendationList:
    found = await state.profiles.recommendations_of_known(api_key.tenant, customer_id)
    if found is None:
        raise _not_found(customer_id)
    return RecommendationList(customer_id=customer_id, recommendations=found[:n])
