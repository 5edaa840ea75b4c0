"""What the models know: customer segments and each model's online metrics."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ReadKey, StateDep
from api.errors import error_responses
from schemas.api import ModelList, SegmentList

router = APIRouter(prefix="/v1", tags=["models"], responses=error_responses(401, 403, 429))


@router.get("/segments", summary="Customer segments: label, size and centroid")
async def segments(state: StateDep, api_key: ReadKey) -> SegmentList:
    return SegmentList(segments=await state.system.segments(api_key.tenant))


@router.get("/models", summary="Each model's version, examples seen and online metrics")
async def models(state: StateDep, _: ReadKey) -> ModelList:
    return ModelList(models=await state.system.models())
