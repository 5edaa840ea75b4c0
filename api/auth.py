"""Who is calling: the API key from the request, its scopes, and its rate limit.

One Redis round trip per request looks the key up (by its SHA-256) and counts the request in
the key's current fixed window (``INCR`` + ``EXPIRE``), so auth costs no more than one read.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from api.errors import ApiProblem
from api.keys import ApiKey, api_key_from_record, hash_key
from api.state import AppState
from feature_store.keys import PREFIX, api_key_key
from schemas.api import Scope

#: Declared for the OpenAPI document (and its "Authorize" button); parsing is done below.
BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)


def rate_limit_key(key_hash: str, window: int) -> str:
    return f"{PREFIX}:ratelimit:{{{key_hash}}}:{window}"


def presented_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer``, ``X-API-Key`` or Basic (Segment's write key).

    >>> from starlette.requests import Request
    >>> presented_key(Request({"type": "http", "headers": [(b"x-api-key", b"crm_k")]}))
    'crm_k'
    """
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user or password or None
    return request.headers.get("x-api-key") or None


def _unauthorized(message: str) -> ApiProblem:
    return ApiProblem(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request) -> ApiKey:
    """The calling key, counted against its rate limit; raises 401 or 429."""
    state: AppState = request.app.state.crm
    key = presented_key(request)
    if not key:
        raise _unauthorized("an API key is required (Authorization: Bearer <key>)")
    key_hash = hash_key(key)
    window_s = state.api_settings.api_rate_window_s
    now = time.time()
    window = int(now // window_s)
    counter = rate_limit_key(key_hash, window)
    async with state.redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(api_key_key(key_hash))
        pipe.incr(counter)
        pipe.expire(counter, window_s + 1)
        record, count, _ = await pipe.execute()
    api_key = api_key_from_record(key_hash, record)
    if api_key is None:
        raise _unauthorized("unknown API key")
    limit = api_key.rate_limit if api_key.rate_limit is not None else (
        state.api_settings.api_rate_limit)
    if limit and count > limit:
        retry_after = max(1, math.ceil((window + 1) * window_s - now))
        raise ApiProblem(429, "rate_limited",
                         f"more than {limit} requests in {window_s}s; retry after {retry_after}s",
                         headers={"Retry-After": str(retry_after)})
    request.state.api_key = api_key
    return api_key


def require(scope: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency: the calling key, which must hold ``scope`` (else 403)."""

    async def dependency(
        request: Request,
        _bearer: Annotated[Any, Depends(BEARER)] = None,
        _header: Annotated[str | None, Depends(API_KEY_HEADER)] = None,
    ) -> ApiKey:
        api_key = await authenticate(request)
        if scope not in api_key.scopes:
            raise ApiProblem(403, "forbidden", f"this key lacks the {scope.value!r} scope")
        return api_key

    dependency.__name__ = f"require_{scope.value}"
    return dependency
