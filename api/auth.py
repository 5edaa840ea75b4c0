"""Who is calling: the API key from the request, its scopes, and its rate limit.

A key's record (tenant, scopes, limit; looked up by the key's SHA-256) is cached in the process
for ``CRM_API_KEY_CACHE_TTL_S`` seconds (default 2), so a revoked key stops working within that
time, not at once; unknown keys are never cached, so a new key works immediately.

Each request is counted in its key's current fixed window in Redis (``INCR`` + ``EXPIRE``, shared
by every API process, so the limit holds however many run). Keys without a limit are not
counted. Most routes count in a round trip of their own (the :func:`require` dependencies); the
hot profile read (:mod:`api.profiles`) calls :func:`authorize` with ``count=False`` and queues the
count on the same pipeline as its reads, so a cached key costs that request one Redis round trip
in all.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from fastapi import Request

from api.errors import ApiProblem
from api.keys import ApiKey, api_key_from_record, hash_key
from api.state import AppState
from feature_store.client import Pipeline
from feature_store.keys import PREFIX, api_key_key
from schemas.api import Scope

#: How a key may be presented, for the OpenAPI document and its "Authorize" button (written
#: there by :mod:`api.openapi`; :func:`presented_key` does the parsing).
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "HTTPBearer": {"type": "http", "description": "Authorization: Bearer <API key>",
                   "scheme": "bearer"},
    "APIKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def rate_limit_key(key_hash: str, window: int) -> str:
    return f"{PREFIX}:ratelimit:{{{key_hash}}}:{window}"


@dataclass(frozen=True)
class RateCount:
    """This request's count in its key's current window, not yet sent to Redis."""

    counter: str
    limit: int
    window: int
    window_s: int
    now: float

    #: How many replies :meth:`queue` adds to the pipeline (``INCR``'s is the first).
    REPLIES: ClassVar[int] = 2

    def queue(self, pipe: Pipeline) -> None:
        """Add the two commands (``INCR``, ``EXPIRE``) to ``pipe``; their replies come first."""
        pipe.incr(self.counter)
        pipe.expire(self.counter, self.window_s + 1)

    def check(self, count: int) -> None:
        """Raise 429 (with ``Retry-After``) when ``count`` (the ``INCR`` reply) is over."""
        if count > self.limit:
            retry_after = max(1, math.ceil((self.window + 1) * self.window_s - self.now))
            raise ApiProblem(
                429, "rate_limited",
                f"more than {self.limit} requests in {self.window_s}s; "
                f"retry after {retry_after}s",
                headers={"Retry-After": str(retry_after)})


@dataclass(frozen=True)
class Caller:
    """An authenticated key and, when it has a limit, the count its route must still send."""

    key: ApiKey
    pending: RateCount | None


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


async def _lookup(state: AppState, key_hash: str) -> ApiKey | None:
    now = time.monotonic()
    api_key = state.key_cache.get(key_hash, now)
    if api_key is None:
        record: Any = await state.redis.hgetall(api_key_key(key_hash))  # type: ignore[misc]
        api_key = api_key_from_record(key_hash, record)
        if api_key is not None:
            state.key_cache.put(api_key, now)
    return api_key


def _rate_count(state: AppState, api_key: ApiKey) -> RateCount | None:
    limit = api_key.rate_limit if api_key.rate_limit is not None else (
        state.api_settings.api_rate_limit)
    if not limit:
        return None
    window_s = state.api_settings.api_rate_window_s
    now = time.time()
    window = int(now // window_s)
    return RateCount(rate_limit_key(api_key.key_hash, window), limit, window, window_s, now)


async def authenticate(request: Request, *, count: bool = True) -> Caller:
    """The calling key; raises 401. With ``count`` it is counted now (and may raise 429),
    else the count is left in :attr:`Caller.pending` for the route's own pipeline."""
    state: AppState = request.app.state.crm
    key = presented_key(request)
    if not key:
        raise _unauthorized("an API key is required (Authorization: Bearer <key>)")
    api_key = await _lookup(state, hash_key(key))
    if api_key is None:
        raise _unauthorized("unknown API key")
    pending = _rate_count(state, api_key)
    if count and pending is not None:
        async with state.redis.pipeline(transaction=False) as pipe:
            pending.queue(pipe)
            replies = await pipe.execute()
        pending.check(replies[0])
        pending = None
    return Caller(api_key, pending)


def _check_scope(api_key: ApiKey, scope: Scope) -> None:
    if scope not in api_key.scopes:
        raise ApiProblem(403, "forbidden", f"this key lacks the {scope.value!r} scope")


async def authorize(request: Request, scope: Scope, *, count: bool = True) -> Caller:
    """:func:`authenticate`, then 403 unless the key holds ``scope``."""
    caller = await authenticate(request, count=count)
    _check_scope(caller.key, scope)
    return caller


def require(scope: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency: the calling key, counted, which must hold ``scope`` (else 403)."""

    async def dependency(request: Request) -> ApiKey:
        return (await authorize(request, scope)).key

    dependency.__name__ = f"require_{scope.value}"
    return dependency
