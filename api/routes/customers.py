"""Customers: live profile, recommendations, and who is most at risk of churning."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import TypeAdapter
from starlette.responses import Response

from api.deps import ReadCaller, ReadKey, StateDep
from api.errors import ApiProblem, error_responses
from api.profiles import read_profile
from schemas.api import AtRiskCustomer, AtRiskList, RecommendationList
from schemas.profile import CustomerProfile

router = APIRouter(prefix="/v1/customers", tags=["customers"],
                   responses=error_responses(401, 403, 422, 429))

_PROFILE_JSON = TypeAdapter(CustomerProfile).serializer
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
            response_model=CustomerProfile, responses=error_responses(404))
async def customer(customer_id: CustomerId, state: StateDep, caller: ReadCaller) -> Response:
    # The hot path: one Redis round trip (rate-limit count + reads), and the profile, already
    # a validated model, serialised once by pydantic-core instead of re-validated by FastAPI.
    profile = await read_profile(state.redis, caller.key.tenant, customer_id, caller.pending)
    if profile is None:
        raise _not_found(customer_id)
    return Response(_PROFILE_JSON.to_json(profile), media_type="application/json")


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
