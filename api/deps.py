"""Dependencies as ``Annotated`` aliases, the way routes ask for them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.auth import require
from api.keys import ApiKey
from api.state import AppState
from schemas.api import Scope


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.crm
    return state


StateDep = Annotated[AppState, Depends(get_state)]
ReadKey = Annotated[ApiKey, Depends(require(Scope.READ))]
IngestKey = Annotated[ApiKey, Depends(require(Scope.INGEST))]
AdminKey = Annotated[ApiKey, Depends(require(Scope.ADMIN))]
