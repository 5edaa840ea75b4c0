"""Every error as JSON (:class:`schemas.api.ApiError`): a code, words, never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import ClusterDownError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from api.responses import ORJSONResponse
from schemas.api import ApiError, FieldProblem
from schemas.problems import ErrorCode

log = logging.getLogger(__name__)

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 413: "payload_too_large", 422: "invalid_body",
          429: "rate_limited", 503: "unavailable"}


class ApiProblem(StarletteHTTPException):
    """Raise to answer with an :class:`ApiError` of this status and code."""

    def __init__(self, status_code: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code


def error_response(status_code: int, error: ApiError,
                   headers: dict[str, str] | None = None) -> ORJSONResponse:
    return ORJSONResponse(error.model_dump(), status_code=status_code, headers=headers)


def _field(location: tuple[Any, ...]) -> str | None:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


async def _http_error(_: Request, exc: Exception) -> ORJSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI's "error parsing the body": a malformed body, as all
        return error_response(422, ApiError(error="invalid_body", message=str(exc.detail)))
    code = getattr(exc, "code", None) or _CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, ApiError(error=code, message=message),
                          headers=dict(exc.headers) if exc.headers else None)


def line_and_column(document: str, position: int) -> tuple[int, int]:
    r"""Where character ``position`` of ``document`` is, counted from 1 as editors do.

    >>> line_and_column('{"events": [\n  {"a": 1,}\n]}', 23)
    (2, 11)
    """
    line = document.count("\n", 0, position) + 1
    return line, position - document.rfind("\n", 0, position)


def _json_error(body: Any, error: Mapping[str, Any]) -> ORJSONResponse:
    """A body that is not JSON: FastAPI gives the character offset (as the error's location)
    and the decoder's words; say where, as a line and column, and name no field."""
    position = error["loc"][-1]
    detail = (error.get("ctx") or {}).get("error") or "not valid JSON"
    where = ""
    if isinstance(body, str) and isinstance(position, int):
        line, column = line_and_column(body, position)
        where = f" at line {line}, column {column}"
    message = f"the body is not valid JSON{where}: {detail}"
    return error_response(422, ApiError(error=ErrorCode.INVALID_JSON, message=message,
                                        problems=[FieldProblem(code=ErrorCode.INVALID_JSON,
                                                               message=message)]))


async def _validation_error(_: Request, exc: Exception) -> ORJSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if errors and errors[0].get("type") == "json_invalid":
        return _json_error(exc.body, errors[0])
    problems = [
        FieldProblem(field=_field(tuple(item.get("loc", ()))), code=str(item.get("type")),
                     message=str(item.get("msg")))
        for item in errors[:50]
    ]
    first = problems[0] if problems else None
    message = f"{first.field}: {first.message}" if first and first.field else (
        first.message if first else "invalid request")
    return error_response(422, ApiError(error="invalid_body", message=message,
                                        problems=problems))


async def _redis_unavailable(request: Request, exc: Exception) -> ORJSONResponse:
    """Redis down, or every pooled connection busy past the pool's wait (overload): the
    request may well succeed a moment later, so 503 with ``Retry-After``, not 500."""
    log.warning("redis unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, ApiError(error="unavailable",
                                        message="the feature store is busy or unreachable; "
                                                "retry shortly"),
                          headers={"Retry-After": "1"})


async def _unexpected_error(request: Request, exc: Exception) -> ORJSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, ApiError(error="internal_error",
                                        message="internal error; it has been logged"))


_HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    StarletteHTTPException: _http_error,
    RequestValidationError: _validation_error,
    RedisConnectionError: _redis_unavailable,
    RedisTimeoutError: _redis_unavailable,
    # A Redis Cluster mid-failover (CRM_REDIS_CLUSTER), once the client's retries are spent.
    ClusterDownError: _redis_unavailable,
    SlotNotCoveredError: _redis_unavailable,
}


def install_error_handlers(app: FastAPI) -> None:
    for exc_type, handler in _HANDLERS.items():
        app.add_exception_handler(exc_type, handler)
    app.add_exception_handler(Exception, _unexpected_error)


async def handled_error_response(request: Request, exc: Exception) -> Response | None:
    """The answer the app's handlers give ``exc``, for code that runs outside FastAPI's
    exception middleware (:mod:`api.fast_path`); ``None`` for an unexpected error, which the
    server-error middleware around everything answers (500) and logs."""
    for exc_type in type(exc).__mro__:
        handler = _HANDLERS.get(exc_type)
        if handler is not None:
            return await handler(request, exc)
    return None


#: ``responses=`` for routers, so the OpenAPI document names every error answer.
def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ApiError, "description": _CODES.get(status, "error")}
            for status in statuses}
