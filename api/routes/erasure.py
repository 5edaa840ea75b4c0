"""Erasure: forget a customer (``crm.erasure``), and tell when it is done."""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import AdminKey, ReadKey, StateDep
from api.errors import ApiProblem, error_responses
from api.publish import PublishError
from feature_store.keys import erasure_receipt_key
from feature_store.reads import from_ms
from schemas.api import ErasureAccepted, ErasureStatus
from schemas.records import ErasureRequest
from schemas.topics import ERASURE

router = APIRouter(prefix="/v1", tags=["erasure"], responses=error_responses(401, 403, 422, 429))

RECEIPT_TTL_S = 90 * 86_400


@router.delete("/customers/{customer_id}", status_code=202, summary="Erase a customer",
               responses=error_responses(503))
async def erase_customer(
    customer_id: Annotated[str, Path(min_length=1, max_length=200)],
    state: StateDep, api_key: AdminKey,
) -> ErasureAccepted:
    """Deletes everything known about the customer and ignores their events for a while."""
    receipt_id = f"er_{secrets.token_hex(12)}"
    now_ms = int(time.time() * 1000)
    key = erasure_receipt_key(receipt_id)
    # The receipt exists before the request is published, so the worker's "done" is never
    # overwritten by a late "pending".
    await state.redis.hset(key, mapping={  # type: ignore[misc]
        "status": "pending", "tenant": api_key.tenant, "customer_id": customer_id,
        "requested_at": str(now_ms)})
    await state.redis.expire(key, RECEIPT_TTL_S)
    request = ErasureRequest(receipt_id=receipt_id, tenant=api_key.tenant,
                             customer_id=customer_id, requested_at=from_ms(now_ms))
    try:
        await state.publisher.raw(state.settings.topic(ERASURE), customer_id,
                                  request.model_dump_json().encode())
    except PublishError as error:
        await state.redis.delete(key)
        raise ApiProblem(503, "unavailable", "the broker did not take the request; retry") from (
            error)
    return ErasureAccepted(receipt_id=receipt_id, status_url=f"/v1/erasures/{receipt_id}")


@router.get("/erasures/{receipt_id}", summary="Whether an erasure is done",
            responses=error_responses(404))
async def erasure_status(
    receipt_id: Annotated[str, Path(min_length=1, max_length=100)],
    state: StateDep, api_key: ReadKey,
) -> ErasureStatus:
    receipt = await state.system.erasure(receipt_id)
    if not receipt or receipt.get("tenant") != api_key.tenant:
        raise ApiProblem(404, "not_found", f"no erasure receipt {receipt_id!r}")
    return ErasureStatus(
        receipt_id=receipt_id, customer_id=receipt.get("customer_id", ""),
        status="done" if receipt.get("status") == "done" else "pending",
        requested_at=from_ms(receipt.get("requested_at")),
        completed_at=from_ms(receipt.get("completed_at")))
